"""The operator's console for a running backfill: control, throttling, progress and the parity gate.

`pay10_backfill` hands a `BackfillConsole` to `backfill_run`, whose batch loop calls it between
batches (never inside a batch's transaction); the data migration `0003` runs without one.
Everything the console knows lives in the database, on the run's own `payments_backfillrun` row
(there since `0002`, so the console works while the backfill runs between `0002` and `0003`):

- control: the operator's request is the run's `state` (`PAUSED`, `CANCELLED`, back to `RUNNING`),
  written by `backfill_runs_control` (the `pay10_backfill_control` command and the admin's
  actions) with one conditional UPDATE; the runner reads it before every batch, so a request takes
  effect between batches, on every machine running a shard. The runner never writes `state` while
  it runs (only `COMPLETED` at the end, or `FAILED`), so the two writers never overwrite each other;
- progress: `counts["console"]`, written only by the runner (after every batch and while it
  waits): invoices and detached payments done of total, batch size, last batch duration, rate,
  ETA, heartbeat, why it waits, the latest error;
- throttling: the batch size adapts toward a target batch duration (`BatchSizeOptimizer`,
  GitLab's batched background migration optimizer), and the runner waits, polling, while the
  operator paused it, while replication lag is over its bound, or while too many transactions
  have been open too long (`DatabaseProbe`);
- the parity gate (`ParityGate`, `payments.services.backfill_parity`): every N batches, FIN-01 ALL_TIME per tenant and currency is
  compared with the figures at the run's start (same day's verdicts); a difference stops the run.

One structured log record per batch goes to the `pay10.backfill` logger (`extra` fields).
"""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from payments.services.backfill_parity import ParityGate

logger = logging.getLogger("pay10.backfill")

RUNNING, PAUSED, CANCELLED, COMPLETED, FAILED = "RUNNING", "PAUSED", "CANCELLED", "COMPLETED", "FAILED"
PAUSE, RESUME, CANCEL = "pause", "resume", "cancel"
# Which states each request moves a run from, and to.
# A stopped (cancelled or failed) run can be paused too, so that its next runner waits for resume.
TRANSITIONS = {PAUSE: ((RUNNING, CANCELLED, FAILED), PAUSED), RESUME: ((PAUSED,), RUNNING), CANCEL: ((RUNNING, PAUSED), CANCELLED)}

WAIT_PAUSED = "paused by the operator (pay10_backfill_control resume)"
WAIT_REPLICATION_LAG = "replication lag {lag:.1f} s is over {limit:g} s"
WAIT_LONG_TRANSACTIONS = "{count} transaction(s) open longer than {age:g} s (at most {limit} allowed)"
CANCELLED_MESSAGE = (
    "backfill run {run} cancelled by the operator before batch {batch}: every committed batch is kept "
    "(invoice cursor {invoice_cursor}, payment cursor {payment_cursor}); run the same pay10_backfill again to resume"
)
PARITY_BROKEN = (
    "parity gate: FIN-01 ALL_TIME {figure} of tenant {tenant} in {currency} was {before} at the start of the run "
    "and is {after} after batch {batch}{more}; the backfill stopped (run {run} kept, state FAILED)"
)
NO_RUN_TO_CONTROL = "no backfill run to {action}: {detail}"
NO_SUCH_RUN = "no backfill run with id {run}"
STALE_AFTER = timedelta(minutes=2)


class BackfillCancelled(Exception):
    """The operator cancelled the run; the message says where it stopped and how to resume."""


class BackfillParityBroken(Exception):
    """The parity gate found FIN-01 moved; the message names tenant, currency and figure."""


# --------------------------------------------------------------------------------------------
# Bounds


@dataclass(frozen=True)
class ConsoleLimits:
    """The console's bounds: `settings.PAY10_BACKFILL` (from the environment), then command options."""

    target_batch_seconds: float = 1.0  # 0 turns batch size adaptation off
    min_batch_size: int = 100
    max_batch_size: int = 10_000
    max_replication_lag_seconds: float = 30.0
    long_transaction_seconds: float = 300.0
    max_long_transactions: int = 0
    poll_seconds: float = 5.0
    parity_every: int = 50  # batches; 0 turns the parity gate off

    SETTINGS_NAMES = {
        "target_batch_seconds": "TARGET_BATCH_SECONDS",
        "min_batch_size": "MIN_BATCH_SIZE",
        "max_batch_size": "MAX_BATCH_SIZE",
        "max_replication_lag_seconds": "MAX_REPLICATION_LAG_SECONDS",
        "long_transaction_seconds": "LONG_TRANSACTION_SECONDS",
        "max_long_transactions": "MAX_LONG_TRANSACTIONS",
        "poll_seconds": "POLL_SECONDS",
        "parity_every": "PARITY_EVERY_BATCHES",
    }

    @classmethod
    def from_settings(cls, **overrides) -> "ConsoleLimits":
        """The settings' values, each replaced by an override that is not None; ValueError when out of range."""
        configured = getattr(settings, "PAY10_BACKFILL", {})
        values = {name: configured[key] for name, key in cls.SETTINGS_NAMES.items() if key in configured}
        values |= {name: value for name, value in overrides.items() if value is not None}
        limits = cls(**values)
        limits.validate()
        return limits

    def validate(self) -> None:
        if self.min_batch_size < 1 or self.max_batch_size < self.min_batch_size:
            raise ValueError("batch size bounds need 1 <= min <= max")
        for name in ("target_batch_seconds", "max_replication_lag_seconds", "long_transaction_seconds",
                     "max_long_transactions", "parity_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', ' ')} cannot be negative")
        if self.poll_seconds <= 0:
            raise ValueError("poll seconds must be positive")


# --------------------------------------------------------------------------------------------
# Batch size: GitLab's optimizer (lib/gitlab/database/background_migration/batch_optimizer.rb)


class BatchSizeOptimizer:
    """Adapts the batch size toward a target batch duration.

    As in GitLab's `BatchOptimizer`: time efficiency = batch duration / target, smoothed as an
    exponential moving average (alpha 0.4) over the last 20 batches; inside 90-95% nothing changes,
    otherwise the size is multiplied by 0.95 / efficiency, at most 1.2 (grow by at most 20% when
    fast, shrink in proportion when slow), then clamped to the bounds. One departure: each batch's
    duration is first scaled to the current batch size (seconds per row x size), so that the
    average is not skewed by batches of other sizes or by a short last batch.
    """

    TARGET_EFFICIENCY = (0.90, 0.95)
    MAX_MULTIPLIER = 1.2
    EMA_ALPHA = 0.4
    NUMBER_OF_BATCHES = 20

    def __init__(self, *, batch_size: int, target_seconds: float, min_size: int, max_size: int) -> None:
        self.batch_size = batch_size
        self.target_seconds = target_seconds
        # The operator's --batch-size is always allowed, even outside the bounds.
        self.min_size = min(min_size, batch_size)
        self.max_size = max(max_size, batch_size)
        self.seconds_per_row: list[float] = []

    def efficiency(self) -> float | None:
        if not self.seconds_per_row or not self.target_seconds:
            return None
        smoothed = self.seconds_per_row[0]
        for value in self.seconds_per_row[1:]:
            smoothed = self.EMA_ALPHA * value + (1 - self.EMA_ALPHA) * smoothed
        return smoothed * self.batch_size / self.target_seconds

    def observe(self, *, rows: int, seconds: float) -> int:
        """Record one committed batch; return the size of the next."""
        if rows < 1 or not self.target_seconds:
            return self.batch_size
        self.seconds_per_row = (self.seconds_per_row + [seconds / rows])[-self.NUMBER_OF_BATCHES:]
        efficiency = self.efficiency()
        low, high = self.TARGET_EFFICIENCY
        if not efficiency or low <= efficiency <= high:
            return self.batch_size
        multiplier = min(high / efficiency, self.MAX_MULTIPLIER)
        self.batch_size = max(self.min_size, min(self.max_size, int(self.batch_size * multiplier)))
        return self.batch_size


# --------------------------------------------------------------------------------------------
# What the database says about load


class DatabaseProbe:
    """Replication lag and long transactions, from PostgreSQL's statistics views (nothing on SQLite).

    Reading other roles' rows of `pg_stat_replication` and `pg_stat_activity` needs the
    `pg_monitor` role (or a superuser); without it the lag reads as unknown (no wait) and other
    roles' transactions are not counted.
    """

    def __init__(self, *, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def _scalar(self, sql: str, params: list) -> float | None:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            # The statistics views are a snapshot taken once per transaction: take a fresh one.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def replication_lag_seconds(self) -> float | None:
        """The largest replay lag of any standby, in seconds; None without standbys."""
        lag = self._scalar("SELECT max(EXTRACT(EPOCH FROM replay_lag)) FROM pg_stat_replication", [])
        return None if lag is None else float(lag)

    def long_transactions(self, *, older_than_seconds: float) -> int:
        """Client transactions of this database, other than ours, open longer than the age."""
        count = self._scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "AND xact_start < clock_timestamp() - make_interval(secs => %s)",
            [older_than_seconds],
        )
        return int(count or 0)


# --------------------------------------------------------------------------------------------
# Control: what the operator asks (command and admin)


@dataclass(frozen=True)
class ControlOutcome:
    changed: list[int]
    unchanged: list[tuple[int, str]]  # (run id, its state)


def backfill_runs_control(*, action: str, run_ids: list[int] | None = None, shard: str | None = None,
                          tenant_id: str | None = None, actor: str = "") -> ControlOutcome:
    """Pause, resume or cancel runs: the given ids, or every unfinished run (of a shard label or a
    tenant). One conditional UPDATE per request, so a run that finished meanwhile is left alone.
    ValueError(NO_SUCH_RUN / NO_RUN_TO_CONTROL) when nothing matches, changing nothing."""
    from payments.models import BackfillRun

    from_states, to_state = TRANSITIONS[action]
    runs = BackfillRun.objects.all()
    if run_ids:
        missing = sorted(set(run_ids) - set(runs.filter(pk__in=run_ids).values_list("pk", flat=True)))
        if missing:
            raise ValueError(NO_SUCH_RUN.format(run=missing[0]))
        runs = runs.filter(pk__in=run_ids)
    else:
        runs = runs.exclude(state=COMPLETED)
        if tenant_id is not None:
            runs = runs.filter(tenant_id=tenant_id)
        if shard is not None:
            runs = runs.filter(counts__shard=shard)
    with transaction.atomic():
        candidates = dict(runs.select_for_update().values_list("pk", "state"))
        if not candidates:
            raise ValueError(NO_RUN_TO_CONTROL.format(action=action, detail="there is no unfinished run"))
        changed = sorted(pk for pk, state in candidates.items() if state in from_states)
        BackfillRun.objects.filter(pk__in=changed).update(state=to_state)
    unchanged = sorted((pk, state) for pk, state in candidates.items() if pk not in changed)
    if not changed and all(state != to_state for _, state in unchanged):
        detail = ", ".join(f"run {pk} is {state}" for pk, state in unchanged)
        raise ValueError(NO_RUN_TO_CONTROL.format(action=action, detail=detail))
    logger.info("backfill %s", action, extra={"event": f"backfill.{action}", "runs": changed, "actor": actor})
    return ControlOutcome(changed=changed, unchanged=unchanged)


# --------------------------------------------------------------------------------------------
# What the admin and `status` show


def _phase_line(console: dict, phase: str) -> tuple[int, int | None]:
    figures = console.get(phase, {})
    return figures.get("done", 0), figures.get("total")


def run_activity(run, *, now=None) -> str:
    """One phrase: what the run is doing now, and why it waits."""
    now = now or timezone.now()
    console = (run.counts or {}).get("console", {})
    if run.state == COMPLETED:
        return "completed"
    if run.state == FAILED:
        return "failed: " + (console.get("lastError") or "see the runner's output")
    if run.state == CANCELLED:
        return "cancelled (run pay10_backfill again to resume)"
    heartbeat = console.get("heartbeatAt")
    beat = datetime.fromisoformat(heartbeat) if heartbeat else None
    if beat is None or now - beat > STALE_AFTER:
        seen = f"last seen {beat:%Y-%m-%d %H:%M:%S %Z}" if beat else "never seen"
        prefix = "paused" if run.state == PAUSED else "running"
        return f"{prefix}, but no runner is attached ({seen}); pay10_backfill resumes it"
    if console.get("waiting"):
        return "waiting: " + console["waiting"]
    return "paused (the runner stops after its current batch)" if run.state == PAUSED else "running"


def run_progress(run) -> dict:
    """Done/total per phase, rate, ETA, last batch: the figures the admin and `status` print."""
    console = (run.counts or {}).get("console", {})
    invoices_done, invoices_total = _phase_line(console, "invoices")
    payments_done, payments_total = _phase_line(console, "payments")
    return {
        "invoices": (invoices_done, invoices_total),
        "payments": (payments_done, payments_total),
        "batchSize": console.get("batchSize", run.batch_size),
        "lastBatchSeconds": console.get("lastBatchSeconds"),
        "rowsPerSecond": console.get("rowsPerSecond"),
        "etaSeconds": console.get("etaSeconds") if run.state not in (COMPLETED,) else 0,
        "lastError": console.get("lastError"),
        "heartbeatAt": console.get("heartbeatAt"),
        "parityChecks": console.get("parityChecks", 0),
    }


def done_of_total(done: int, total: int | None) -> str:
    if total is None:
        return f"{done:,} of ?"
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    return f"{done:,} of {total:,}{percent}"


def heartbeat_display(run, *, now=None) -> str:
    """When the runner last wrote to its run row: `2026-01-31 10:00:00 UTC (4 s ago)`."""
    heartbeat = (run.counts or {}).get("console", {}).get("heartbeatAt")
    if not heartbeat:
        return "-"
    beat = datetime.fromisoformat(heartbeat)
    ago = max((now or timezone.now()) - beat, timedelta(0))
    return f"{beat:%Y-%m-%d %H:%M:%S %Z} ({timedelta(seconds=round(ago.total_seconds()))} ago)"


def eta_display(seconds) -> str:
    return "-" if seconds is None else str(timedelta(seconds=round(seconds)))


# --------------------------------------------------------------------------------------------
# The runner's side


class BackfillConsole:
    """Called by the backfill's batch loop; see the module docstring."""

    def __init__(self, *, limits: ConsoleLimits, batch_size: int, parity_figures: Callable[..., dict] | None = None,
                 probe: DatabaseProbe | None = None, sleep: Callable[[float], None] | None = None,
                 using: str = DEFAULT_DB_ALIAS) -> None:
        self.limits = limits
        self.parity_figures = parity_figures  # FIN-01's figures for the parity gate; None: no gate
        self.using = using
        self.probe = probe or DatabaseProbe(using=using)
        self.sleep = sleep or time.sleep
        self.optimizer = BatchSizeOptimizer(
            batch_size=batch_size, target_seconds=limits.target_batch_seconds,
            min_size=limits.min_batch_size, max_size=limits.max_batch_size,
        )
        self.parity: ParityGate | None = None
        self.run = None
        self.phase = "invoices"
        self.batch_number = 1
        self.phase_started_at = time.monotonic()
        self.phase_done_here = 0
        self.busy_seconds = 0.0

    # -- bookkeeping on the run row (the runner is the only writer of counts)

    @property
    def _console(self) -> dict:
        return self.run.counts.setdefault("console", {})

    def _save(self) -> None:
        self._console["heartbeatAt"] = timezone.now().isoformat()
        type(self.run).objects.using(self.using).filter(pk=self.run.pk).update(counts=self.run.counts)

    def _state(self) -> str:
        return type(self.run).objects.using(self.using).filter(pk=self.run.pk).values_list("state", flat=True).get()

    def _labels(self) -> dict:
        return {"run": self.run.pk, "shard": (self.run.counts or {}).get("shard"), "tenant": self.run.tenant_id}

    # -- hooks

    def run_started(self, run, *, today: date, tenant_ids: list[str]) -> None:
        """Take the run (a cancelled or failed one is running again; a paused one stays paused and
        waits) and the parity gate's reference figures."""
        self.run = run
        type(run).objects.using(self.using).filter(pk=run.pk, state__in=(CANCELLED, FAILED)).update(state=RUNNING)
        self._console.update(lastError=None, waiting=None, batchSize=self.optimizer.batch_size, parityChecks=0)
        self._save()
        if self.limits.parity_every and self.parity_figures is not None:
            self.parity = ParityGate(tenant_ids=tenant_ids, today=today, every=self.limits.parity_every,
                                     figures=self.parity_figures)
            self.parity.start()

    def phase_started(self, *, phase: str, remaining: int) -> None:
        """A pass begins: its total is what an earlier runner did plus what is left now."""
        self.phase = phase
        done_before = self._console.get(phase, {}).get("done", 0)
        self._console[phase] = {"done": done_before, "total": done_before + remaining}
        self.phase_started_at = time.monotonic()
        self.phase_done_here = 0
        self.busy_seconds = 0.0
        self._save()

    def before_batch(self) -> int:
        """Wait while paused or throttled; raise BackfillCancelled when cancelled. Returns the batch size."""
        announced = None
        while True:
            state = self._state()
            if state == CANCELLED:
                self._console["waiting"] = None
                self._save()
                message = CANCELLED_MESSAGE.format(
                    run=self.run.pk, batch=self.batch_number, invoice_cursor=self.run.cursor_invoice_id,
                    payment_cursor=self.run.cursor_payment_id,
                )
                logger.warning(message, extra={"event": "backfill.cancelled", **self._labels()})
                raise BackfillCancelled(message)
            reason = WAIT_PAUSED if state == PAUSED else self._throttle_reason()
            if reason is None:
                if announced is not None:
                    self._console["waiting"] = None
                    self._save()
                    logger.warning("backfill resumes", extra={"event": "backfill.resumed", **self._labels()})
                return self.optimizer.batch_size
            self._console["waiting"] = reason
            self._save()
            if reason != announced:
                logger.warning("backfill waits: %s", reason, extra={"event": "backfill.waiting", "reason": reason,
                                                                    **self._labels()})
                announced = reason
            self.sleep(self.limits.poll_seconds)

    def _throttle_reason(self) -> str | None:
        limits = self.limits
        lag = self.probe.replication_lag_seconds()
        if lag is not None and lag > limits.max_replication_lag_seconds:
            return WAIT_REPLICATION_LAG.format(lag=lag, limit=limits.max_replication_lag_seconds)
        count = self.probe.long_transactions(older_than_seconds=limits.long_transaction_seconds)
        if count > limits.max_long_transactions:
            return WAIT_LONG_TRANSACTIONS.format(count=count, age=limits.long_transaction_seconds,
                                                 limit=limits.max_long_transactions)
        return None

    def batch_committed(self, *, rows: int, seconds: float) -> None:
        """After a batch's commit: progress, the next batch size, one log line, the parity gate."""
        used = self.optimizer.batch_size
        next_size = self.optimizer.observe(rows=rows, seconds=seconds)
        self.phase_done_here += rows
        self.busy_seconds += seconds
        phase = self._console.setdefault(self.phase, {"done": 0, "total": None})
        phase["done"] += rows
        elapsed = time.monotonic() - self.phase_started_at
        rate = self.phase_done_here / elapsed if elapsed > 0 else None
        total = phase.get("total")
        eta = (max(total - phase["done"], 0) / rate) if rate and total is not None else None
        self._console.update(
            phase=self.phase, batchSize=next_size, lastBatchSeconds=round(seconds, 3),
            rowsPerSecond=round(rate, 1) if rate else None, etaSeconds=round(eta) if eta is not None else None,
            batches=self._console.get("batches", 0) + 1,
        )
        self._save()
        logger.info(
            "backfill batch",
            extra={
                "event": "backfill.batch", **self._labels(), "phase": self.phase, "batch": self.batch_number,
                "rows": rows, "seconds": round(seconds, 3), "batchSize": used, "nextBatchSize": next_size,
                "done": phase["done"], "total": total, "rowsPerSecond": self._console["rowsPerSecond"],
                "etaSeconds": self._console["etaSeconds"],
            },
        )
        self.batch_number += 1
        if self.parity is not None and self.parity.due():
            self.parity_check()

    def parity_check(self) -> None:
        moved = self.parity.differences()
        self._console["parityChecks"] = self.parity.checks
        if not moved:
            self._save()
            logger.info("backfill parity holds", extra={"event": "backfill.parity", "ok": True, **self._labels(),
                                                        "checks": self.parity.checks})
            return
        first = moved[0]
        message = PARITY_BROKEN.format(
            **first, batch=self.batch_number - 1, run=self.run.pk,
            more=f" ({len(moved) - 1} more figure(s) moved)" if len(moved) > 1 else "",
        )
        logger.error(message, extra={"event": "backfill.parity", "ok": False, **self._labels(), "moved": moved[:20]})
        raise BackfillParityBroken(message)

    def run_finishing(self) -> None:
        """Before the run is marked completed: one last parity check over the whole run."""
        if self.parity is not None and self.parity.batches_since:
            self.parity_check()
        self._console.update(waiting=None, etaSeconds=0)
        self._save()

    def run_failed(self, error: BaseException) -> None:
        """Record why the run stopped; a failed run is resumed by the next pay10_backfill."""
        if self.run is None or isinstance(error, BackfillCancelled):
            return
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        self._console.update(lastError=f"{type(error).__name__}: {detail}" if detail else type(error).__name__,
                             waiting=None)
        try:
            self._save()
            type(self.run).objects.using(self.using).filter(pk=self.run.pk, state__in=(RUNNING, PAUSED)).update(
                state=FAILED
            )
        except Exception:  # the connection may be what failed; the runner's own error is what matters
            logger.exception("could not record the backfill's failure", extra={"event": "backfill.error"})
