"""The console across processes, on PostgreSQL: two real `pay10_backfill --shard i/2` processes
wait on a real long transaction held by a third session and say so, then obey
`pay10_backfill_control` between batches (pause, resume, pause, cancel); the cancelled pair ends
cleanly and later runs finish the job exactly as an uninterrupted run would."""
import json
import os
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import call_command

from payments.models import BackfillRun
from payments.services import backfill
from payments.services.backfill import Shard
from payments.services.backfill_control import WAIT_PAUSED
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import other_connection
from tests.payments.backfill.helpers import ROOT, database_url
from tests.payments.backfill.helpers import money_state

pytestmark = [pytest.mark.postgres, pytest.mark.pay10_regression, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 60
LONG = "transaction(s) open longer than 1 s"
SHARDS = ("1/2", "2/2")


def shard_process(shard: str, log_dir) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    command = [
        sys.executable, "manage.py", "pay10_backfill", "--shard", shard, "--batch-size", "4",
        "--target-batch-seconds", "0", "--poll-seconds", "0.1", "--long-transaction-seconds", "1",
        "--max-long-transactions", "0", "--parity-every", "5",
    ]
    name = shard.replace("/", "-of-")
    return subprocess.Popen(
        command, cwd=ROOT, env=env,
        stdout=open(log_dir / f"{name}.out", "w"), stderr=open(log_dir / f"{name}.err", "w"),
    )


def runs() -> dict[str, BackfillRun]:
    return {run.counts.get("shard"): run for run in BackfillRun.objects.all()}


def until(condition, what: str, processes=()):
    started = time.monotonic()
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a shard exited ({process.returncode}) while waiting for {what}"
        assert time.monotonic() - started < DEADLINE_SECONDS, f"timed out waiting for {what}"
        time.sleep(0.05)


def waiting(reason_part: str) -> bool:
    found = runs()
    return len(found) == 2 and all(reason_part in (run.counts.get("console", {}).get("waiting") or "") for run in found.values())


def control(*args) -> str:
    out = StringIO()
    call_command("pay10_backfill_control", *args, stdout=out)
    return out.getvalue()


def test_two_shard_processes_pause_resume_and_cancel_together_and_a_later_run_finishes(tmp_path):
    legacy_seed(tenant_id="rcme-dev", invoices=800, seed=3)
    backfill.backfill_run(batch_size=50)
    uninterrupted = money_state()
    backfill.backfill_reverse()

    report = other_connection()  # a long report transaction: both shards must wait for it
    report.execute("BEGIN")
    report.execute("SELECT count(*) FROM billing_invoice")
    time.sleep(1.2)  # already long when the shards look, so neither writes a batch first
    processes = [shard_process(shard, tmp_path) for shard in SHARDS]
    try:
        until(lambda: waiting(LONG), "both shards to wait for the long transaction", processes)
        assert all(run.cursor_invoice_id == 0 for run in runs().values())

        # Paused while waiting; the report ends; they stay paused and write nothing.
        assert control("pause").startswith("Paused run(s)")
        until(lambda: waiting(WAIT_PAUSED), "both shards to say they are paused", processes)
        report.execute("COMMIT")
        time.sleep(1.0)
        assert all(run.cursor_invoice_id == 0 and run.state == "PAUSED" for run in runs().values())

        # Resumed: both move; paused again as soon as they have.
        assert control("resume").startswith("Resumed run(s)")
        until(lambda: all(run.cursor_invoice_id > 0 for run in runs().values()),
              "both shards to write batches again", processes)
        control("pause")
        until(lambda: waiting(WAIT_PAUSED), "both shards to say they are paused again", processes)
        paused_at = {shard: run.cursor_invoice_id for shard, run in runs().items()}
        time.sleep(0.5)
        assert {shard: run.cursor_invoice_id for shard, run in runs().items()} == paused_at
        status = control("status")
        assert status.count(f"PAUSED: waiting: {WAIT_PAUSED}") == 2

        # Cancelled while paused: both end cleanly, cursors kept.
        assert control("cancel").startswith("Cancelled run(s)")
        for process in processes:
            process.wait(timeout=DEADLINE_SECONDS)
    finally:
        report.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for shard, process in zip(SHARDS, processes):
        name = shard.replace("/", "-of-")
        err = (tmp_path / f"{name}.err").read_text()
        assert process.returncode == 3, err
        assert "cancelled by the operator" in err.splitlines()[-1]
        records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        batches = [record for record in records if record["event"] == "backfill.batch"]
        assert batches and {record["shard"] for record in batches} == {shard}
        assert {record["event"] for record in records} >= {"backfill.waiting", "backfill.batch", "backfill.cancelled"}
    cancelled = runs()
    assert {run.state for run in cancelled.values()} == {"CANCELLED"}
    assert all(0 < run.cursor_invoice_id < run.upper_invoice_id for run in cancelled.values())

    for shard in SHARDS:
        summary = backfill.backfill_run(batch_size=50, shard=Shard.parse(shard))
        assert summary.resumed and summary.run_id == cancelled[shard].pk
    assert money_state() == uninterrupted
    assert {run.state for run in runs().values()} == {"COMPLETED"}
