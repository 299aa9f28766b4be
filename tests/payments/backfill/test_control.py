"""The operator's console for a running backfill (payments.services.backfill_control): pause,
resume and cancel between batches, the adaptive batch size, the waits, the parity gate, the
per-batch log line and `pay10_backfill_control`. Cross-process behaviour on PostgreSQL is in
test_backfill_control_processes.py."""
import json
import logging
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billing.models import Invoice, Tenant
from billing.selectors.parity import fin01_parity_figures
from config.logs import JsonLineFormatter
from payments.models import BackfillRun
from payments.services import backfill
from payments.services.backfill import common as backfill_common
from payments.services import backfill_control as control
from payments.services.backfill_control import (
    BackfillCancelled,
    BackfillConsole,
    BackfillParityBroken,
    BatchSizeOptimizer,
    ConsoleLimits,
    backfill_runs_control,
    run_activity,
)
from payments.services.invoices import invoice_create
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import Crash, money_state
from tests.payments.backfill.helpers import other_connection

pytestmark = [pytest.mark.pay10_regression]

TENANT = "rcme-dev"
INVOICES = 60
BATCH = 10
# A fixed batch size, no parity gate, nothing to wait for: each test turns on what it tests.
QUIET = ConsoleLimits(target_batch_seconds=0, max_replication_lag_seconds=30, max_long_transactions=1000,
                      poll_seconds=0.01, parity_every=0)


class FakeProbe:
    """Replication lag and long transactions as a test says, one reading per poll."""

    def __init__(self, *, lags=(), long_transactions=()) -> None:
        self.lags, self.long = list(lags), list(long_transactions)

    def replication_lag_seconds(self):
        return self.lags.pop(0) if self.lags else None

    def long_transactions(self, *, older_than_seconds):
        return self.long.pop(0) if self.long else 0


def console(limits=QUIET, **options) -> BackfillConsole:
    options.setdefault("parity_figures", fin01_parity_figures)
    return BackfillConsole(limits=limits, batch_size=BATCH, **options)


@pytest.fixture
def seeded():
    legacy_seed(tenant_id=TENANT, invoices=INVOICES, seed=7)


def uninterrupted_state() -> dict:
    backfill.backfill_run(batch_size=BATCH)
    state = money_state()
    backfill.backfill_reverse()
    return state


def at(stage: str, batch: int, action):
    """A crash_hook doing `action()` once, at that stage of that batch (inside its transaction)."""
    def hook(seen_stage, seen_batch):
        if (seen_stage, seen_batch) == (stage, batch):
            action()
    return hook


def waiting_reason() -> str | None:
    return BackfillRun.objects.get().counts["console"].get("waiting")


# --------------------------------------------------------------------------------------------
# The adaptive batch size (GitLab's optimizer)


def test_batch_size_grows_by_at_most_a_fifth_when_batches_are_fast():
    optimizer = BatchSizeOptimizer(batch_size=1000, target_seconds=2.0, min_size=100, max_size=5000)
    sizes = [optimizer.observe(rows=optimizer.batch_size, seconds=0.1) for _ in range(12)]
    assert sizes[:3] == [1200, 1440, 1728]
    assert sizes[-1] == 5000  # held at the upper bound


def test_batch_size_shrinks_in_proportion_when_batches_are_slow_and_stops_at_the_lower_bound():
    optimizer = BatchSizeOptimizer(batch_size=1000, target_seconds=1.0, min_size=100, max_size=5000)
    assert optimizer.observe(rows=1000, seconds=4.0) == 237  # 1000 x 0.95 / 4
    for _ in range(10):
        optimizer.observe(rows=optimizer.batch_size, seconds=optimizer.batch_size * 0.004)
    assert optimizer.batch_size == 237  # each row still takes 4 ms: 237 rows ~ 0.95 s, on target
    for _ in range(10):
        optimizer.observe(rows=optimizer.batch_size, seconds=30.0)
    assert optimizer.batch_size == 100


def test_batch_size_holds_inside_the_target_band_and_when_adaptation_is_off():
    on_target = BatchSizeOptimizer(batch_size=1000, target_seconds=1.0, min_size=100, max_size=5000)
    assert on_target.observe(rows=1000, seconds=0.93) == 1000
    off = BatchSizeOptimizer(batch_size=1000, target_seconds=0, min_size=100, max_size=5000)
    assert off.observe(rows=1000, seconds=50.0) == 1000


def test_the_operators_batch_size_is_allowed_outside_the_bounds():
    optimizer = BatchSizeOptimizer(batch_size=10, target_seconds=1.0, min_size=100, max_size=5000)
    assert optimizer.observe(rows=10, seconds=100.0) == 10


@pytest.mark.django_db
def test_a_run_adapts_its_batch_size_between_batches(seeded):
    limits = ConsoleLimits(target_batch_seconds=60.0, max_long_transactions=1000, parity_every=0)
    sizes = []
    backfill.backfill_run(batch_size=BATCH, console=console(limits), progress=Sizes(sizes))
    # The operator's size first, then 20% more per fast batch: int(10 x 1.2), int(12 x 1.2), int(14 x 1.2).
    assert sizes[:4] == [10, 12, 14, 16]
    assert BackfillRun.objects.get().counts["console"]["batchSize"] > BATCH


class Sizes(backfill.BackfillProgress):
    def __init__(self, sizes: list) -> None:
        self.sizes, self.done = sizes, 0

    def batch_done(self, *, phase, batch_number, done, total):
        if phase == "invoices":
            self.sizes.append(done - self.done)
            self.done = done


# --------------------------------------------------------------------------------------------
# Pause, resume, cancel between batches


@pytest.mark.django_db
def test_a_paused_run_waits_between_batches_and_goes_on_when_resumed(seeded, monkeypatch):
    uninterrupted = uninterrupted_state()
    sleeps, started_after_pause = [], []

    def hook(stage, batch):
        if (stage, batch) == ("batch-end", 2):
            backfill_runs_control(action=control.PAUSE)
        if stage == "batch-start" and batch > 2:
            started_after_pause.append((batch, len(sleeps)))

    monkeypatch.setattr(backfill_common, "crash_hook", hook)

    def sleep(seconds):
        run = BackfillRun.objects.get()
        sleeps.append((run.state, run.counts["console"]["waiting"], run.cursor_invoice_id))
        if len(sleeps) == 3:
            backfill_runs_control(action=control.RESUME)

    backfill.backfill_run(batch_size=BATCH, console=console(sleep=sleep))

    assert len(sleeps) == 3
    assert {state for state, _, _ in sleeps} == {"PAUSED"}
    assert {reason for _, reason, _ in sleeps} == {control.WAIT_PAUSED}
    assert len({cursor for _, _, cursor in sleeps}) == 1  # no batch ran while paused
    assert started_after_pause[0] == (3, 3)  # batch 3 started only after the third poll resumed the run
    run = BackfillRun.objects.get()
    assert run.state == "COMPLETED" and run.counts["console"]["waiting"] is None
    assert money_state() == uninterrupted


@pytest.mark.django_db
def test_a_cancelled_run_ends_cleanly_keeping_its_cursor_and_a_later_run_resumes_it(seeded, monkeypatch):
    uninterrupted = uninterrupted_state()
    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-end", 2, lambda: backfill_runs_control(action=control.CANCEL)))

    with pytest.raises(BackfillCancelled, match=r"cancelled by the operator before batch 3: every committed batch"):
        backfill.backfill_run(batch_size=BATCH, console=console())
    run = BackfillRun.objects.get()
    assert run.state == "CANCELLED"
    assert 0 < run.cursor_invoice_id < run.upper_invoice_id
    assert run.counts["console"]["invoices"]["done"] == 2 * BATCH
    assert run_activity(run).startswith("cancelled")

    monkeypatch.setattr(backfill_common, "crash_hook", None)
    summary = backfill.backfill_run(batch_size=BATCH, console=console())

    assert summary.resumed and summary.run_id == run.pk
    assert BackfillRun.objects.get().state == "COMPLETED"
    assert money_state() == uninterrupted


@pytest.mark.django_db
def test_a_pause_outlives_its_runner_and_a_restarted_runner_waits_for_resume(seeded, monkeypatch):
    def pause_then_die():
        backfill_runs_control(action=control.PAUSE)
        raise Crash("killed")

    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-end", 1, pause_then_die))
    with pytest.raises(Crash):
        backfill.backfill_run(batch_size=BATCH, console=console())
    monkeypatch.setattr(backfill_common, "crash_hook", None)
    # The failed batch took its pause with it; the console recorded the failure.
    assert BackfillRun.objects.get().state == "FAILED"

    backfill_runs_control(action=control.PAUSE)
    seen = []

    def sleep(seconds):
        seen.append((waiting_reason(), BackfillRun.objects.get().cursor_invoice_id))
        backfill_runs_control(action=control.RESUME)

    summary = backfill.backfill_run(batch_size=BATCH, console=console(sleep=sleep))
    assert summary.resumed
    assert seen == [(control.WAIT_PAUSED, 0)]
    assert BackfillRun.objects.get().state == "COMPLETED"


@pytest.mark.django_db
def test_the_command_exits_3_with_one_line_when_cancelled(seeded, monkeypatch):
    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-end", 1, lambda: backfill_runs_control(action=control.CANCEL)))
    with pytest.raises(CommandError, match="run the same pay10_backfill again to resume") as cancelled:
        call_command("pay10_backfill", "--batch-size", str(BATCH), stdout=StringIO(), stderr=StringIO())
    assert cancelled.value.returncode == 3
    assert BackfillRun.objects.get().cursor_invoice_id > 0


# --------------------------------------------------------------------------------------------
# Waits: replication lag, long transactions


@pytest.mark.django_db
def test_the_run_waits_while_replication_lag_is_over_its_bound_and_says_why(seeded):
    reasons = []
    probe = FakeProbe(lags=[45.0, 31.5, 2.0])
    limits = ConsoleLimits(target_batch_seconds=0, max_replication_lag_seconds=30, poll_seconds=0.01, parity_every=0)
    backfill.backfill_run(batch_size=BATCH, console=console(limits, probe=probe, sleep=lambda s: reasons.append(waiting_reason())))
    assert reasons == ["replication lag 45.0 s is over 30 s", "replication lag 31.5 s is over 30 s"]
    assert BackfillRun.objects.get().state == "COMPLETED"


@pytest.mark.django_db
def test_the_run_waits_while_too_many_transactions_are_long(seeded):
    reasons = []
    probe = FakeProbe(long_transactions=[3, 0])
    limits = ConsoleLimits(target_batch_seconds=0, long_transaction_seconds=60, max_long_transactions=2,
                           poll_seconds=0.01, parity_every=0)
    backfill.backfill_run(batch_size=BATCH, console=console(limits, probe=probe, sleep=lambda s: reasons.append(waiting_reason())))
    assert reasons == ["3 transaction(s) open longer than 60 s (at most 2 allowed)"]


@pytest.mark.django_db
def test_a_run_cancelled_while_it_waits_ends_without_another_batch(seeded):
    def sleep(seconds):
        backfill_runs_control(action=control.CANCEL)

    with pytest.raises(BackfillCancelled, match="before batch 1"):
        backfill.backfill_run(batch_size=BATCH, console=console(probe=FakeProbe(lags=[99.0] * 5), sleep=sleep))
    assert BackfillRun.objects.get().cursor_invoice_id == 0


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_real_long_transaction_in_another_session_holds_the_run_until_it_ends(seeded):
    """pg_stat_activity, no fake: a transaction held open by another connection."""
    import time

    other = other_connection()
    other.execute("BEGIN")
    other.execute("SELECT 1")
    time.sleep(0.3)
    reasons = []

    def sleep(seconds):
        reasons.append(waiting_reason())
        if len(reasons) == 2:
            other.execute("COMMIT")

    limits = ConsoleLimits(target_batch_seconds=0, long_transaction_seconds=0.2, max_long_transactions=0,
                           poll_seconds=0.01, parity_every=0)
    try:
        backfill.backfill_run(batch_size=BATCH, console=console(limits, sleep=sleep))
    finally:
        other.close()
    assert reasons[:2] == ["1 transaction(s) open longer than 0.2 s (at most 0 allowed)"] * 2
    assert len(reasons) == 2
    assert BackfillRun.objects.get().state == "COMPLETED"


# --------------------------------------------------------------------------------------------
# The parity gate


def raise_an_invoice_by_raw_sql():
    """What the gate is for: money moved by a write nobody audited (the guards accept it: an
    invoice's amount grows, nothing becomes over-applied)."""
    invoice = Invoice.objects.filter(tenant_id=TENANT, status="ISSUED").order_by("-pk").first()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_invoice SET amount_cents = amount_cents + 100 WHERE id = %s", [invoice.pk])
    return invoice


@pytest.mark.django_db
def test_the_parity_gate_stops_the_run_naming_tenant_currency_and_figure(seeded, monkeypatch):
    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-start", 2, raise_an_invoice_by_raw_sql))
    limits = ConsoleLimits(target_batch_seconds=0, max_long_transactions=1000, parity_every=2)
    invoiced = invoiced_cents()

    with pytest.raises(BackfillParityBroken) as broken:
        backfill.backfill_run(batch_size=BATCH, console=console(limits))

    assert str(broken.value).startswith(
        f"parity gate: FIN-01 ALL_TIME invoicedCents of tenant {TENANT} in {currency()} was {invoiced} at the start of the run "
        f"and is {invoiced + 100} after batch 2 ("
    )
    run = BackfillRun.objects.get()
    assert run.state == "FAILED"
    assert run.cursor_invoice_id < run.upper_invoice_id  # stopped at the check, not at the end
    assert run.counts["console"]["lastError"].startswith("BackfillParityBroken: parity gate: FIN-01 ALL_TIME invoicedCents")
    assert run_activity(run).startswith("failed: BackfillParityBroken")


def invoiced_cents() -> int:
    from billing.selectors.finance import Period, finance_summary

    summary = finance_summary(tenant=Tenant.objects.get(pk=TENANT), period=Period.ALL_TIME)
    return summary["currencies"][currency()]["invoicedCents"]


def currency() -> str:
    return Tenant.objects.get(pk=TENANT).currency


@pytest.mark.django_db
def test_the_command_exits_4_on_a_broken_parity_and_a_later_run_resumes(seeded, monkeypatch):
    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-start", 1, raise_an_invoice_by_raw_sql))
    with pytest.raises(CommandError, match=f"invoicedCents of tenant {TENANT} in {currency()}") as broken:
        call_command("pay10_backfill", "--batch-size", str(BATCH), "--parity-every", "1", stdout=StringIO(),
                     stderr=StringIO())
    assert broken.value.returncode == 4
    monkeypatch.setattr(backfill_common, "crash_hook", None)
    call_command("pay10_backfill", "--batch-size", str(BATCH), "--parity-every", "1", stdout=StringIO(),
                 stderr=StringIO())
    assert BackfillRun.objects.get().state == "COMPLETED"


@pytest.mark.django_db
def test_the_parity_gate_holds_through_a_whole_run_and_lets_audited_application_writes_pass(seeded, monkeypatch, staff):
    monkeypatch.setattr(backfill_common, "crash_hook", at("batch-start", 2, lambda: invoice_create(
        tenant=Tenant.objects.get(pk=TENANT), number="APP-NEW-1", amount_cents=5_000, actor=staff)))
    limits = ConsoleLimits(target_batch_seconds=0, max_long_transactions=1000, parity_every=1)

    backfill.backfill_run(batch_size=BATCH, console=console(limits))

    run = BackfillRun.objects.get()
    assert run.state == "COMPLETED"
    assert run.counts["console"]["parityChecks"] >= INVOICES // BATCH


# --------------------------------------------------------------------------------------------
# One structured log line per batch


@pytest.mark.django_db
def test_each_batch_logs_one_json_line_when_stderr_is_not_a_terminal(seeded, caplog):
    """Through the project's logging configuration, whose handler writes JSON lines off a terminal
    (`config.logs.JsonLineFormatter`, tests/test_logs.py)."""
    caplog.set_level(logging.INFO, logger="pay10.backfill")
    call_command("pay10_backfill", "--batch-size", str(BATCH), "--target-batch-seconds", "0", stdout=StringIO(),
                 stderr=StringIO())
    lines = [json.loads(JsonLineFormatter().format(record)) for record in caplog.records]
    batches = [line for line in lines if line["event"] == "backfill.batch"]
    run = BackfillRun.objects.get()
    assert len(batches) == run.counts["console"]["batches"] >= INVOICES // BATCH
    first = batches[0]
    assert first["logger"] == "pay10.backfill" and first["level"] == "INFO"
    assert (first["run"], first["phase"], first["batch"], first["rows"], first["batchSize"]) == (
        run.pk, "invoices", 1, BATCH, BATCH)
    assert first["total"] == Invoice.objects.count() and first["done"] == BATCH
    assert isinstance(first["seconds"], float)


@pytest.mark.django_db
def test_batch_lines_go_to_the_commands_stderr_when_logging_hides_them(seeded):
    """With `PAY10_LOG_LEVEL` above INFO the command still writes its batch lines, to its own stderr."""
    pay10 = logging.getLogger("pay10")
    level = pay10.level
    pay10.setLevel(logging.WARNING)
    try:
        err = StringIO()
        call_command("pay10_backfill", "--batch-size", str(BATCH), "--target-batch-seconds", "0",
                     stdout=StringIO(), stderr=err)
    finally:
        pay10.setLevel(level)
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    batches = [line for line in lines if line["event"] == "backfill.batch"]
    assert len(batches) == BackfillRun.objects.get().counts["console"]["batches"] >= INVOICES // BATCH
    assert batches[0]["logger"] == "pay10.backfill"


# --------------------------------------------------------------------------------------------
# pay10_backfill_control


def control_command(*args) -> str:
    out = StringIO()
    call_command("pay10_backfill_control", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_control_pauses_resumes_and_cancels_every_unfinished_run_and_only_those(seeded):
    first = BackfillRun.objects.create(batch_size=10, upper_invoice_id=10, counts={"shard": "1/2"})
    second = BackfillRun.objects.create(batch_size=10, upper_invoice_id=10, counts={"shard": "2/2"})
    done = BackfillRun.objects.create(batch_size=10, upper_invoice_id=10, state="COMPLETED")

    assert control_command("pause").startswith(f"Paused run(s) {first.pk}, {second.pk}")
    assert control_command("resume", "--shard", "2/2").startswith(f"Resumed run(s) {second.pk}")
    assert dict(BackfillRun.objects.values_list("pk", "state")) == {
        first.pk: "PAUSED", second.pk: "RUNNING", done.pk: "COMPLETED"}
    assert "Cancelled run(s)" in control_command("cancel")
    assert set(BackfillRun.objects.exclude(pk=done.pk).values_list("state", flat=True)) == {"CANCELLED"}


@pytest.mark.django_db
def test_control_refuses_what_it_cannot_do_and_changes_nothing():
    with pytest.raises(CommandError, match="no backfill run to pause: there is no unfinished run"):
        control_command("pause")
    run = BackfillRun.objects.create(batch_size=10, upper_invoice_id=10, state="COMPLETED")
    with pytest.raises(CommandError, match=f"no backfill run with id {run.pk + 1}"):
        control_command("cancel", "--run", str(run.pk + 1))
    with pytest.raises(CommandError, match=f"no backfill run to resume: run {run.pk} is COMPLETED"):
        control_command("resume", "--run", str(run.pk))
    with pytest.raises(CommandError, match="a shard is i/K"):
        control_command("pause", "--shard", "3/2")
    with pytest.raises(CommandError, match="invalid choice"):
        control_command("stop")
    assert BackfillRun.objects.get().state == "COMPLETED"


@pytest.mark.django_db
def test_status_prints_each_runs_progress_and_why_it_waits(seeded):
    def sleep(seconds):
        status.append(control_command("status"))
        backfill_runs_control(action=control.CANCEL)

    status = []
    with pytest.raises(BackfillCancelled):
        backfill.backfill_run(batch_size=BATCH, console=console(probe=FakeProbe(lags=[99.0]), sleep=sleep))
    run = BackfillRun.objects.get()
    lines = status[0].splitlines()
    assert lines[0] == f"Run {run.pk} (unsharded) RUNNING: waiting: replication lag 99.0 s is over 30 s"
    total = Invoice.objects.count()
    assert lines[1] == f"  invoices 0 of {total:,} (0%); detached payments 0 of ?"
    assert lines[2].startswith(f"  batch size {BATCH}, last batch -")
    after = control_command("status").splitlines()
    assert after[0] == f"Run {run.pk} (unsharded) CANCELLED: cancelled (run pay10_backfill again to resume)"


def test_console_bounds_are_checked():
    with pytest.raises(ValueError, match="batch size bounds need 1 <= min <= max"):
        ConsoleLimits.from_settings(min_batch_size=500, max_batch_size=100)
    with pytest.raises(ValueError, match="poll seconds must be positive"):
        ConsoleLimits.from_settings(poll_seconds=0)
    assert ConsoleLimits.from_settings(parity_every=7).parity_every == 7


@pytest.mark.django_db
def test_the_command_refuses_bad_bounds_before_touching_anything(seeded):
    with pytest.raises(CommandError, match="max long transactions cannot be negative"):
        call_command("pay10_backfill", "--max-long-transactions", "-1", stdout=StringIO())
    assert not BackfillRun.objects.exists()
