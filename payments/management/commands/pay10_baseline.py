"""Runbook Step 4: record what finance staff see before the PAY-10 migration."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing.selectors.baseline import UnknownTenant, baseline_document, tenant_by_id

UNWRITABLE = "cannot write the baseline to {path}: {reason}"


class Command(BaseCommand):
    help = (
        "Write a PAY-10 baseline as JSON: FIN-01 ALL_TIME, FIN-02 page 1 of 50 per tenant, and invoice count and "
        "amount by stored status per tenant. Works at the legacy state and after."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="The JSON file to write.")
        parser.add_argument("--tenant", help="Only this tenant (default: every tenant).")

    def handle(self, *args, **options):
        out, tenant_id, verbosity = Path(options["out"]), options["tenant"], options["verbosity"]
        try:
            tenant = tenant_by_id(tenant_id=tenant_id)
        except UnknownTenant as error:
            raise CommandError(str(error)) from error
        document = baseline_document(tenant=tenant)
        try:
            out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        except OSError as error:
            raise CommandError(UNWRITABLE.format(path=out, reason=error.strerror or error)) from error
        if verbosity >= 1:
            invoices = sum(
                figures["count"] for by_status in document["invoicesByStatus"].values() for figures in by_status.values()
            )
            scope = f"tenant {tenant.pk}" if tenant is not None else f"{len(document['fin02'])} tenant(s)"
            self.stdout.write(
                f"Baseline of {scope}, {invoices} invoice(s), {document['schema']} schema, as of {document['asOf']} "
                f"written to {out}"
            )
