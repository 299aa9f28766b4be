"""`manage.py pay10_refresh_statuses [--tenant T] [--batch-size N]`: bring stored invoice statuses to
today's verdict of the status engine (safe to run daily; it changes only what is stale)."""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from billing.models import Invoice
from billing.selectors.baseline import UnknownTenant, tenant_by_id
from payments.models import InvoiceMigration
from payments.services.invoice_status import invoice_statuses_refresh

BAD_BATCH_SIZE = "--batch-size must be at least 1"


class Command(BaseCommand):
    help = "Store today's status engine verdict for every migrated invoice whose stored status is stale."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug); default every tenant.")
        parser.add_argument("--batch-size", type=int, default=5000, help="Invoices per transaction.")

    def handle(self, *args, **options):
        tenant_id = options["tenant"]
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError(BAD_BATCH_SIZE)
        try:
            tenant = tenant_by_id(tenant_id=tenant_id)
        except UnknownTenant as error:
            raise CommandError(str(error)) from error
        today = timezone.localdate()
        migrated = InvoiceMigration.objects.order_by("invoice_id").values_list("invoice_id", flat=True)
        if tenant is not None:
            migrated = migrated.filter(invoice__tenant=tenant)
        cursor = 0
        changed = 0
        while ids := list(migrated.filter(invoice_id__gt=cursor)[:batch_size]):
            with transaction.atomic():
                # Lock order: invoices first, ascending (as every writer).
                list(Invoice.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
                changes = invoice_statuses_refresh(tenant=tenant, invoice_ids=ids, today=today)
            changed += len(changes)
            cursor = ids[-1]
            if options["verbosity"] >= 2:
                for pk, (old, new) in sorted(changes.items()):
                    self.stdout.write(f"  invoice {pk}: {old} -> {new}")
        self.stdout.write(f"Refreshed invoice statuses for {today}: {changed} changed")
