"""`manage.py pay10_backfill [--tenant T] [--batch-size N] [--shard i/K] [--dry-run] [--report FILE]` (runbook Step 5)."""
import json
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from billing.models import Tenant
from payments.services.backfill import (
    DEFAULT_BATCH_SIZE,
    BackfillError,
    BackfillProgress,
    Shard,
    backfill_deviations_report,
    backfill_run,
)
from payments.selectors.schema import pay10_schema_installed
from payments.services.invoice_status import invoice_statuses_refresh

RULE = "=" * 60
UNKNOWN_TENANT = "unknown tenant {tenant!r}"
BAD_BATCH_SIZE = "--batch-size must be at least 1"
SCHEMA_MISSING = "the PAY-10 schema is not installed: run `manage.py migrate payments 0002_pay10_schema` first"
BAR_WIDTH = 30
SHARD_REFRESH_NOTE = (
    "Shard {shard} done: when every shard has finished, run `manage.py pay10_refresh_statuses` "
    "(needed only when they ran across midnight or were resumed on a later day)"
)


class CommandProgress(BackfillProgress):
    """A progress bar with ETA on a terminal, one line per batch otherwise."""

    def __init__(self, command: BaseCommand, verbosity: int) -> None:
        self.out = command.stdout
        self.verbosity = verbosity
        self.tty = command.stdout.isatty()
        self.started_at = time.monotonic()
        self.bar_open = False

    def started(self, *, total_invoices: int, to_migrate: int) -> None:
        self.out.write(f"Found {total_invoices} total invoices")
        self.started_at = time.monotonic()

    def invoice_migrated(self, *, number: str, legacy_status: str) -> None:
        if self.verbosity >= 2:
            self._close_bar()
            label = legacy_status if legacy_status in ("PAID", "PARTIALLY_PAID") else f"{legacy_status} (unpaid)"
            self.out.write(f"  Backfilling {label} invoice {number} ...")

    def batch_done(self, *, phase: str, batch_number: int, done: int, total: int) -> None:
        if self.verbosity < 1:
            return
        elapsed = time.monotonic() - self.started_at
        if self.tty and self.verbosity < 2:
            fraction = done / total if total else 1.0
            eta = timedelta(seconds=round(elapsed / fraction - elapsed)) if fraction else "?"
            filled = int(BAR_WIDTH * fraction)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.out.write(f"\r  {phase:<8} [{bar}] {done}/{total} ETA {eta}", ending="")
            self.out.flush()
            self.bar_open = True
        else:
            self.out.write(f"  batch {batch_number}: {done}/{total} {phase} done ({elapsed:.1f}s)")

    def _close_bar(self) -> None:
        if self.bar_open:
            self.out.write("")
            self.bar_open = False

    def finished(self) -> None:
        self._close_bar()


class Command(BaseCommand):
    help = "PAY-10 backfill: legacy invoices and payments onto allocations, credits and audit rows (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug); default every tenant.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Invoices per transaction.")
        parser.add_argument("--dry-run", action="store_true", help="Compute and print the summary, write nothing.")
        parser.add_argument("--report", metavar="FILE", help="Write every deviation recorded so far as JSON.")
        parser.add_argument(
            "--shard", metavar="i/K",
            help="Run as shard i of K (ids with id %% K == i-1); K shards run at once, each resumable.",
        )

    def handle(self, *args, **options):
        tenant_id = options["tenant"]
        batch_size = options["batch_size"]
        dry_run = options["dry_run"]
        report = options["report"]
        verbosity = options["verbosity"]
        if not pay10_schema_installed():
            raise CommandError(SCHEMA_MISSING)
        if tenant_id is not None and not Tenant.objects.filter(pk=tenant_id).exists():
            raise CommandError(UNKNOWN_TENANT.format(tenant=tenant_id))
        if batch_size < 1:
            raise CommandError(BAD_BATCH_SIZE)
        try:
            shard = Shard.parse(options["shard"]) if options["shard"] else None
        except ValueError as error:
            raise CommandError(str(error)) from None

        self.stdout.write("Starting PAY-10 migration: Backfilling Payments and Allocations")
        if dry_run:
            self.stdout.write("(dry run: nothing will be written)")
        self.stdout.write(RULE)
        progress = CommandProgress(self, verbosity)
        try:
            summary = backfill_run(
                tenant_id=tenant_id, batch_size=batch_size, dry_run=dry_run, progress=progress, shard=shard
            )
        except BackfillError as error:
            raise CommandError(str(error)) from None
        progress.finished()
        if shard is not None and not dry_run:
            # Each shard's batches store today's verdict already; a refresh over every invoice per
            # shard would only make K concurrent scans (and updates) of the same rows.
            self.stdout.write(SHARD_REFRESH_NOTE.format(shard=shard.label))
        elif not dry_run:
            # Bring every migrated invoice's stored status to today's verdict (a no-op when current).
            invoice_statuses_refresh(tenant=Tenant.objects.get(pk=tenant_id) if tenant_id else None)

        self.stdout.write(RULE)
        self.stdout.write("Dry run complete (rolled back, nothing written)!" if dry_run else "Migration complete!")
        self.stdout.write(f"  PAID invoices backfilled: {summary.paid}")
        self.stdout.write(f"  PARTIALLY_PAID invoices backfilled: {summary.partially_paid}")
        self.stdout.write(f"  Unpaid invoices status recomputed: {summary.unpaid}")
        self.stdout.write(f"  Total processed: {summary.total_processed}")
        if verbosity >= 2:
            for key in ("payments", "syntheticPayments", "allocations", "credits", "deviations", "statusesChanged"):
                self.stdout.write(f"  {key}: {summary.counts.get(key, 0)}")
        if summary.orphaned_allocations:
            self.stdout.write(f"✗ {summary.orphaned_allocations} orphaned allocations found (see pay10_cleanup_orphans)")
        else:
            self.stdout.write("✓ No orphaned allocations found")
        if report:
            entries = backfill_deviations_report()
            with open(report, "w", encoding="utf-8") as handle:
                json.dump(entries, handle, indent=2, default=str)
            self.stdout.write(f"Wrote {len(entries)} deviations to {report}")

