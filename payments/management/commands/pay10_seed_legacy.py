"""`manage.py pay10_seed_legacy --tenant T --invoices N [--seed S]`: a realistic legacy data set."""
import time

from django.core.management.base import BaseCommand, CommandError

from payments.demo.legacy_seed import ExtraMoney, legacy_seed

BAD_INVOICE_COUNT = "--invoices must be at least 1"
BAD_SHARE = "--pending-share and --credit-share must be within 0..1"


class Command(BaseCommand):
    help = "Append deterministic legacy invoices and payments (every status and anomaly) to a tenant."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug; created if missing.")
        parser.add_argument("--invoices", type=int, required=True, help="How many invoices to add.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed (also picks a new tenant's currency).")
        parser.add_argument("--pending-share", type=float, default=0.0,
                            help="Share of invoices (0..1) that also get a PENDING payment (default 0).")
        parser.add_argument("--credit-share", type=float, default=0.0,
                            help="Share of invoices (0..1) that also get a succeeded payment beyond what they are "
                                 "paid, which the backfill turns into credit (default 0).")

    def handle(self, *args, **options):
        tenant_id = options["tenant"]
        invoices = options["invoices"]
        seed = options["seed"]
        extra = ExtraMoney(pending=options["pending_share"], credit=options["credit_share"])
        if invoices < 1:
            raise CommandError(BAD_INVOICE_COUNT)
        if not (0 <= extra.pending <= 1 and 0 <= extra.credit <= 1):
            raise CommandError(BAD_SHARE)
        started = time.monotonic()
        result = legacy_seed(tenant_id=tenant_id, invoices=invoices, seed=seed, extra=extra)
        self.stdout.write(
            f"Seeded {result.invoices} invoices ({result.first_number}..{result.last_number}) and "
            f"{result.payments} payments for tenant {result.tenant_id} ({result.currency}); "
            f"cross-tenant links with {result.other_tenant_id}; {time.monotonic() - started:.1f}s"
        )
