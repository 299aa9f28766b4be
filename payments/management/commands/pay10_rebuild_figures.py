"""`manage.py pay10_rebuild_figures [--only figures|balances] [--batch-size N] [--resume]`: rebuild
what FIN-01/FIN-02 read (PostgreSQL): the read model (invoice figures and their rollups) and FIN-01's
tenant balances, e.g. when `pay10_verify` reports `read_model_matches` or `tenant_balances_match`
failing. The service keeps running: readers compute live until a build ends, and every commit
meanwhile keeps its own rows. `--resume` finishes a build that was interrupted instead of starting over."""
from django.core.management.base import BaseCommand, CommandError

from payments.models import InvoiceFiguresBuild, TenantBalanceBuild
from payments.services import balances, figures

NOT_SUPPORTED = "the FIN-01/FIN-02 read model exists on PostgreSQL only; this database computes its figures live"
NOTHING_TO_RESUME = "no interrupted build to resume; run without --resume to rebuild"
BAD_BATCH_SIZE = "--batch-size must be at least 1"
PARTS = ("figures", "balances")


class Command(BaseCommand):
    help = (
        "Rebuild the FIN-01/FIN-02 read model (invoice figures and their rollups) from the allocations, and FIN-01's "
        "tenant balances from the payments and credits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--only", choices=PARTS, help="Rebuild only the read model or only the tenant balances.")
        parser.add_argument(
            "--batch-size", type=int,
            help=f"Rows per transaction (default {figures.BUILD_BATCH_SIZE:,} invoices for the read model, "
            f"{balances.BUILD_BATCH_SIZE:,} payments or credits for the balances).",
        )
        parser.add_argument("--resume", action="store_true", help="Finish an interrupted build.")

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError(BAD_BATCH_SIZE)
        if not figures.figures_supported():
            raise CommandError(NOT_SUPPORTED)
        parts = [options["only"]] if options["only"] else list(PARTS)

        def progress(cursor: int, upper: int) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(f"  built up to invoice {cursor} of {upper}")

        if options["resume"]:
            pending = {"figures": InvoiceFiguresBuild, "balances": TenantBalanceBuild}
            parts = [part for part in parts if pending[part].objects.exists()]
            if not parts:
                raise CommandError(NOTHING_TO_RESUME)
        if "figures" in parts:
            build = figures.figures_build if options["resume"] else figures.figures_rebuild
            built = build(batch_size=batch_size or figures.BUILD_BATCH_SIZE, progress=progress)
            self.stdout.write(f"Read model built: {built} invoice(s) refreshed")
        if "balances" in parts:
            build = balances.balances_build if options["resume"] else balances.balances_rebuild
            build(batch_size=batch_size or balances.BUILD_BATCH_SIZE)
            self.stdout.write("Tenant balances built")
