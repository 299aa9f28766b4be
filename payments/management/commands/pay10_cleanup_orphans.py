"""Runbook troubleshooting: remove orphaned allocations, audited (see `payments.services.orphans`)."""
from django.core.management.base import BaseCommand

from payments.services.orphans import orphan_action, orphans_cleanup

NONE_FOUND = "✓ No orphaned allocations found"


class Command(BaseCommand):
    help = (
        "Find allocations whose invoice/payment/credit is missing (deleted) or that cross tenant or currency "
        "(reversed), audit each as ORPHAN_REMOVED and recompute the affected invoice statuses."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List the orphans and change nothing.")

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        result = orphans_cleanup(dry_run=dry_run)
        if not result.orphans:
            self.stdout.write(NONE_FOUND)
            return
        self.stdout.write(f"Found {len(result.orphans)} orphaned allocation(s):")
        for orphan in result.orphans:
            source = f"payment {orphan['payment_id']}" if orphan["payment_id"] else f"credit {orphan['credit_id']}"
            self.stdout.write(
                f"  allocation {orphan['id']} ({orphan['tenant_id']}): {orphan['amount_cents']} cents from {source} "
                f"to invoice {orphan['invoice_id']}: {orphan['reason']} -> {'would be ' if dry_run else ''}"
                f"{orphan_action(orphan)}"
            )
        if dry_run:
            self.stdout.write("Dry run: nothing changed.")
            return
        self.stdout.write(
            f"Removed {len(result.orphans)} orphaned allocation(s): {result.deleted} deleted (their invoice, payment "
            f"or credit is gone), {result.reversed} reversed (tenant or currency mismatch); "
            f"{result.statuses_changed} invoice status(es) recomputed; each audited as ORPHAN_REMOVED."
        )
