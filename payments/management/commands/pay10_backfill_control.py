"""`manage.py pay10_backfill_control pause|resume|cancel|status [--run ID ...] [--shard i/K] [--tenant T]`:
the operator's hand on running backfills, from any machine (the state lives in the database)."""
import getpass
import socket

from django.core.management.base import BaseCommand, CommandError

from payments.models import BackfillRun
from payments.services.backfill import Shard
from payments.services.backfill_control import (
    CANCEL,
    PAUSE,
    RESUME,
    backfill_runs_control,
    done_of_total,
    eta_display,
    run_activity,
    run_progress,
)
from payments.selectors.schema import pay10_schema_installed

STATUS = "status"
SCHEMA_MISSING = "the PAY-10 schema is not installed: there is no backfill to control"
NO_RUNS = "No backfill run recorded yet."
APPLIED = {
    PAUSE: "Paused run(s) {runs}: each stops after its current batch and waits.",
    RESUME: "Resumed run(s) {runs}: each continues with its next batch.",
    CANCEL: "Cancelled run(s) {runs}: each ends after its current batch, keeping its cursor; "
            "run pay10_backfill again to resume.",
}
STATUS_RUNS = 20


class Command(BaseCommand):
    help = "Pause, resume or cancel running PAY-10 backfills (all shards, any machine), or print their progress."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=[PAUSE, RESUME, CANCEL, STATUS])
        parser.add_argument("--run", type=int, action="append", dest="runs", metavar="ID",
                            help="Only this run (repeatable); default every unfinished run.")
        parser.add_argument("--shard", metavar="i/K", help="Only the unfinished run of this shard.")
        parser.add_argument("--tenant", help="Only unfinished runs of this tenant (slug).")

    def handle(self, *args, **options):
        action = options["action"]
        if not pay10_schema_installed():
            raise CommandError(SCHEMA_MISSING)
        shard = options["shard"]
        if shard is not None:
            try:
                shard = Shard.parse(shard).label
            except ValueError as error:
                raise CommandError(str(error)) from None
        if action == STATUS:
            self.status(run_ids=options["runs"])
            return
        actor = f"{getpass.getuser()}@{socket.gethostname()}"
        try:
            outcome = backfill_runs_control(action=action, run_ids=options["runs"], shard=shard,
                                            tenant_id=options["tenant"], actor=actor)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if outcome.changed:
            self.stdout.write(APPLIED[action].format(runs=", ".join(map(str, outcome.changed))))
        for run_id, state in outcome.unchanged:
            self.stdout.write(f"Run {run_id} left as it is ({state}).")

    def status(self, *, run_ids: list[int] | None) -> None:
        runs = BackfillRun.objects.order_by("-pk")
        runs = runs.filter(pk__in=run_ids) if run_ids else runs[:STATUS_RUNS]
        runs = list(runs)
        if not runs:
            self.stdout.write(NO_RUNS)
            return
        for run in runs:
            progress = run_progress(run)
            scope = f"shard {run.counts.get('shard')}" if (run.counts or {}).get("shard") else "unsharded"
            tenant = f", tenant {run.tenant_id}" if run.tenant_id else ""
            self.stdout.write(f"Run {run.pk} ({scope}{tenant}) {run.state}: {run_activity(run)}")
            self.stdout.write(
                f"  invoices {done_of_total(*progress['invoices'])}; "
                f"detached payments {done_of_total(*progress['payments'])}"
            )
            last = progress["lastBatchSeconds"]
            rate = progress["rowsPerSecond"]
            self.stdout.write(
                f"  batch size {progress['batchSize']}, last batch {'-' if last is None else f'{last:.2f} s'}, "
                f"rate {'-' if rate is None else f'{rate:,.0f} rows/s'}, ETA {eta_display(progress['etaSeconds'])}, "
                f"parity checks {progress['parityChecks']}"
            )
            if progress["lastError"]:
                self.stdout.write(f"  latest error: {progress['lastError']}")
