"""`manage.py pay10_backfill [--tenant T] [--batch-size N] [--shard i/K] [--dry-run] [--report FILE]` (runbook Step 5),
with the console's bounds as options (docs/runbook.md, "Watching and steering a running backfill")."""
import json
import logging
import time
from contextlib import contextmanager
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from billing.models import Tenant
from billing.selectors.parity import fin01_parity_figures
from config.logs import JsonLineFormatter
from payments.services.backfill import (
    DEFAULT_BATCH_SIZE,
    BackfillError,
    BackfillProgress,
    Shard,
    backfill_run,
)
from payments.selectors.backfill_deviations import backfill_deviations_report
from payments.selectors.schema import pay10_schema_installed
from payments.services.backfill_control import (
    BackfillCancelled,
    BackfillConsole,
    BackfillParityBroken,
    ConsoleLimits,
    logger as backfill_logger,
)
from payments.services.invoice_status import invoice_statuses_refresh

RULE = "=" * 60
UNKNOWN_TENANT = "unknown tenant {tenant!r}"
BAD_BATCH_SIZE = "--batch-size must be at least 1"
SCHEMA_MISSING = "the PAY-10 schema is not installed: run `manage.py migrate payments 0002_pay10_schema` first"
BAR_WIDTH = 30
CANCELLED_EXIT_CODE = 3
PARITY_EXIT_CODE = 4
# LogRecord attributes that are not `extra=` fields.
RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
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


class KeyValueFormatter(logging.Formatter):
    """On a terminal: the message, then the `extra` fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in vars(record).items() if key not in RECORD_ATTRIBUTES)
        return f"{record.getMessage()} {fields}".rstrip()


@contextmanager
def batch_log(stream, *, verbosity: int):
    """Send the `pay10.backfill` records to the command's stderr unless the project's logging shows
    them already (`config/settings.py` LOGGING: JSON lines off a terminal): JSON lines when stderr
    is not a terminal; on a terminal, beside the progress bar, only waits and errors (every batch
    with -v 2)."""
    if backfill_logger.isEnabledFor(logging.INFO) or verbosity < 1:
        yield
        return
    tty = stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter() if tty else JsonLineFormatter())
    handler.setLevel(logging.INFO if not tty or verbosity >= 2 else logging.WARNING)
    level, propagate = backfill_logger.level, backfill_logger.propagate
    backfill_logger.addHandler(handler)
    backfill_logger.setLevel(logging.INFO)
    backfill_logger.propagate = False
    try:
        yield
    finally:
        backfill_logger.removeHandler(handler)
        backfill_logger.setLevel(level)
        backfill_logger.propagate = propagate


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
        console = parser.add_argument_group(
            "console", "Bounds of the throttle and the parity gate; default from settings.PAY10_BACKFILL (environment)."
        )
        console.add_argument("--target-batch-seconds", type=float, help="Batch duration the batch size adapts to (0: fixed size).")
        console.add_argument("--min-batch-size", type=int, help="Smallest adapted batch size.")
        console.add_argument("--max-batch-size", type=int, help="Largest adapted batch size.")
        console.add_argument("--max-replication-lag", type=float, metavar="SECONDS",
                             help="Wait while a standby's replay lag is over this.")
        console.add_argument("--long-transaction-seconds", type=float,
                             help="A transaction open longer than this counts as long.")
        console.add_argument("--max-long-transactions", type=int, help="Wait while more long transactions are open.")
        console.add_argument("--poll-seconds", type=float, help="How often a waiting run looks again.")
        console.add_argument("--parity-every", type=int, metavar="BATCHES",
                             help="Compare FIN-01 with the run's start every this many batches (0: off).")

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
            limits = ConsoleLimits.from_settings(
                target_batch_seconds=options["target_batch_seconds"], min_batch_size=options["min_batch_size"],
                max_batch_size=options["max_batch_size"], max_replication_lag_seconds=options["max_replication_lag"],
                long_transaction_seconds=options["long_transaction_seconds"],
                max_long_transactions=options["max_long_transactions"], poll_seconds=options["poll_seconds"],
                parity_every=options["parity_every"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        console = None if dry_run else BackfillConsole(
            limits=limits, batch_size=batch_size, parity_figures=fin01_parity_figures
        )

        self.stdout.write("Starting PAY-10 migration: Backfilling Payments and Allocations")
        if dry_run:
            self.stdout.write("(dry run: nothing will be written)")
        self.stdout.write(RULE)
        progress = CommandProgress(self, verbosity)
        try:
            with batch_log(self.stderr, verbosity=verbosity):
                summary = backfill_run(
                    tenant_id=tenant_id, batch_size=batch_size, dry_run=dry_run, progress=progress, shard=shard,
                    console=console,
                )
        except BackfillError as error:
            raise CommandError(str(error)) from None
        except BackfillCancelled as cancelled:
            progress.finished()
            raise CommandError(str(cancelled), returncode=CANCELLED_EXIT_CODE) from None
        except BackfillParityBroken as broken:
            progress.finished()
            raise CommandError(str(broken), returncode=PARITY_EXIT_CODE) from None
        progress.finished()
        if shard is not None and not dry_run:
            # Each shard's batches store today's verdict already; a refresh over every invoice per
            # shard would only make K concurrent scans (and updates) of the same rows.
            self.stdout.write(SHARD_REFRESH_NOTE.format(shard=shard.label))
        elif not dry_run:
            # Bring every migrated invoice's stored status to today's verdict (a no-op when current).
            if tenant_id:
                invoice_statuses_refresh(tenant=Tenant.objects.get(pk=tenant_id))
            else:
                invoice_statuses_refresh(all_tenants=True)

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

