"""`manage.py pay10_rebuild_figures [--batch-size N] [--resume]`: rebuild the FIN-01/FIN-02 read model
(PostgreSQL), e.g. when `pay10_verify` reports `read_model_matches` failing. The service keeps
running: readers compute live until the build ends, and every commit meanwhile keeps its own
invoices. `--resume` finishes a build that was interrupted instead of starting over."""
from django.core.management.base import BaseCommand, CommandError

from payments.models import InvoiceFiguresBuild
from payments.services.figures import BUILD_BATCH_SIZE, figures_build, figures_rebuild, figures_supported

NOT_SUPPORTED = "the FIN-01/FIN-02 read model exists on PostgreSQL only; this database computes its figures live"
NOTHING_TO_RESUME = "no interrupted build to resume; run without --resume to rebuild"
BAD_BATCH_SIZE = "--batch-size must be at least 1"


class Command(BaseCommand):
    help = "Rebuild the FIN-01/FIN-02 read model (invoice figures and their rollup) from the allocations."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=BUILD_BATCH_SIZE, help="Invoices per transaction.")
        parser.add_argument("--resume", action="store_true", help="Finish an interrupted build.")

    def handle(self, *args, **options):
        if options["batch_size"] < 1:
            raise CommandError(BAD_BATCH_SIZE)
        if not figures_supported():
            raise CommandError(NOT_SUPPORTED)

        def progress(cursor: int, upper: int) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(f"  built up to invoice {cursor} of {upper}")

        if options["resume"]:
            if not InvoiceFiguresBuild.objects.exists():
                raise CommandError(NOTHING_TO_RESUME)
            built = figures_build(batch_size=options["batch_size"], progress=progress)
        else:
            built = figures_rebuild(batch_size=options["batch_size"], progress=progress)
        self.stdout.write(f"Read model built: {built} invoice(s) refreshed")
