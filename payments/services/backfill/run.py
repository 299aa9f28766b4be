"""A whole backfill run: lock, create or resume the run row, pass 1 over invoices and pass 2 over
detached payments in keyset batches (each batch ONE transaction: `batch`, then the run's cursor),
the console's hooks between batches, the statistics after each commit, then the summary.
"""
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Max
from django.utils import timezone

from payments.domain import status as engine
from payments.selectors.verification.orphans import orphaned_allocation_count
from payments.services.backfill.batch import detached_payments_migrate, invoices_migrate
from payments.services.backfill.common import (
    DEFAULT_BATCH_SIZE,
    RUN_LABELS,
    UNPAID,
    BackfillModels,
    BatchResult,
    hook,
)
from payments.services.backfill.locks import Shard, backfill_lock, shard_invoices, shard_payments
from payments.services.statistics import GrowingTables

if TYPE_CHECKING:
    from payments.services.backfill_control import BackfillConsole


class _DryRunRollback(Exception):
    pass


class BackfillProgress:
    """What a run tells its caller; the command prints it, the migration ignores it."""

    def started(self, *, total_invoices: int, to_migrate: int) -> None:
        pass

    def invoice_migrated(self, *, number: str, legacy_status: str) -> None:
        pass

    def batch_done(self, *, phase: str, batch_number: int, done: int, total: int) -> None:
        pass


@dataclass
class BackfillSummary:
    total_invoices: int
    counts: dict[str, int]
    orphaned_allocations: int
    run_id: int | None
    resumed: bool
    dry_run: bool

    @property
    def paid(self) -> int:
        return self.counts.get(engine.PAID, 0)

    @property
    def partially_paid(self) -> int:
        return self.counts.get(engine.PARTIALLY_PAID, 0)

    @property
    def unpaid(self) -> int:
        return self.counts.get(UNPAID, 0)

    @property
    def total_processed(self) -> int:
        return self.paid + self.partially_paid + self.unpaid


def _merged(counts: dict, more: dict) -> dict:
    merged = dict(counts)
    for key, value in more.items():
        merged[key] = merged.get(key, 0) + value
    return merged


def _scoped(queryset, tenant_id: str | None):
    return queryset if tenant_id is None else queryset.filter(tenant_id=tenant_id)


def _max_id(queryset) -> int:
    return queryset.aggregate(top=Max("pk"))["top"] or 0


def backfill_run(
    *,
    apps=global_apps,
    using: str = DEFAULT_DB_ALIAS,
    tenant_id: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    today: date | None = None,
    progress: BackfillProgress | None = None,
    shard: Shard | None = None,
    console: "BackfillConsole | None" = None,
) -> BackfillSummary:
    """Run (or resume) the backfill for one tenant or all; see the module docstring.

    With `shard`, only that shard's invoices (pass 1) and legacy payments (pass 2) are this run's:
    K shards run at once, each with its own `BackfillRun` (its label in `counts["shard"]`) and lock,
    each resumable on its own. Whatever a shard's batch touches it locks in the usual order, so
    shards never write a row twice, even where their rows meet (a payment of another shard's invoice
    goes with that invoice, whichever takes it first).

    With `console` (`payments.services.backfill_control`, what `pay10_backfill` passes), the run
    obeys the operator's pause/resume/cancel between batches, adapts its batch size, waits while the
    database is under strain, publishes its progress on its run row and checks FIN-01 parity; it
    needs the live models and is not used with a dry run.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if console is not None and dry_run:
        raise ValueError("a dry run has no console: it is one transaction, rolled back")
    progress = progress or BackfillProgress()
    today = today or timezone.localdate()
    m = BackfillModels(apps)
    options = dict(tenant_id=tenant_id, batch_size=batch_size, today=today, progress=progress, shard=shard,
                   console=console)
    with backfill_lock(using=using, shard=shard):
        if not dry_run:
            return _run(m, using=using, **options)
        summary = None
        try:
            with transaction.atomic(using=using):
                summary = _run(m, using=using, **options)
                raise _DryRunRollback
        except _DryRunRollback:
            pass
        summary.dry_run = True
        return summary


def _unfinished_run(m: BackfillModels, *, using: str, tenant_id: str | None, shard: Shard | None):
    """The newest unfinished run of this scope (tenant and shard), or None."""
    label = shard.label if shard else None
    runs = m.BackfillRun.objects.using(using).filter(tenant_id=tenant_id).exclude(state="COMPLETED").order_by("-pk")
    return next((run for run in runs if (run.counts or {}).get("shard") == label), None)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a batch: it allocates hundreds of thousands of small
    acyclic objects (rows, plans, COPY tuples) that reference counting frees, and each collection
    it would trigger walks them all (about 4% of a run's time). Restored, and so run, after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _batches_run(
    run, todo, *, cursor_field: str, phase: str, total: int, migrate: Callable[[list[int], int], "BatchResult"],
    using: str, batch_size: int, progress: "BackfillProgress", first_batch: int,
    after_commit: Callable[["BatchResult"], None] | None = None, console: "BackfillConsole | None" = None,
) -> int:
    """Keyset batches over `todo` from the run's cursor: each batch is one transaction that writes
    its rows and moves the cursor, so a run killed anywhere resumes where the last commit left it.
    Between batches the console (if any) may wait, stop the run, or change the batch size.
    Returns the number the next batch would have."""
    batch_number = first_batch
    done = 0
    if console is not None:
        console.phase_started(phase=phase, remaining=total)
    while True:
        if console is not None:
            batch_size = console.before_batch()
        started = time.monotonic()
        cursor = getattr(run, cursor_field)
        ids = list(todo.filter(pk__gt=cursor).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return batch_number
        with _gc_paused(), transaction.atomic(using=using):
            hook("batch-start", batch_number)
            result = migrate(ids, batch_number)
            setattr(run, cursor_field, ids[-1])
            run.counts = _merged(run.counts, result.counts())
            run.save(using=using, update_fields=[cursor_field, "counts"])
            hook("batch-end", batch_number)
        if console is not None:
            console.batch_committed(rows=len(ids), seconds=time.monotonic() - started)
        if after_commit is not None:
            after_commit(result)
        done += len(ids)
        progress.batch_done(phase=phase, batch_number=batch_number, done=done, total=total)
        batch_number += 1


def _run(m: BackfillModels, *, using: str, tenant_id: str | None, batch_size: int, today: date,
         progress: BackfillProgress, shard: Shard | None, console: "BackfillConsole | None") -> BackfillSummary:
    invoices = _scoped(m.Invoice.objects.using(using), tenant_id)
    total_invoices = invoices.count()
    run = _unfinished_run(m, using=using, tenant_id=tenant_id, shard=shard)
    resumed = run is not None
    if run is None:
        pending_invoices = shard_invoices(_scoped(m.unmigrated_invoices(using), tenant_id), shard).exists()
        pending_payments = shard_payments(_scoped(m.legacy_payments(using), tenant_id), shard).exists()
        if not pending_invoices and not pending_payments:
            progress.started(total_invoices=total_invoices, to_migrate=0)
            return BackfillSummary(
                total_invoices=total_invoices,
                counts=BatchResult().counts(),
                orphaned_allocations=orphaned_allocation_count(tenant_id=tenant_id, using=using),
                run_id=None,
                resumed=False,
                dry_run=False,
            )
        run = m.BackfillRun.objects.using(using).create(
            tenant_id=tenant_id,
            batch_size=batch_size,
            upper_invoice_id=_max_id(invoices),
            upper_payment_id=_max_id(_scoped(m.Payment.objects.using(using), tenant_id)),
            counts=BatchResult().counts() | ({"shard": shard.label} if shard else {}),
        )
    if console is None:
        return _passes_run(m, run, using=using, tenant_id=tenant_id, batch_size=batch_size, today=today,
                           progress=progress, shard=shard, total_invoices=total_invoices, resumed=resumed)
    tenant_ids = [tenant_id] if tenant_id else list(m.Tenant.objects.using(using).values_list("pk", flat=True))
    try:
        console.run_started(run, today=today, tenant_ids=tenant_ids)
        return _passes_run(m, run, using=using, tenant_id=tenant_id, batch_size=batch_size, today=today,
                           progress=progress, shard=shard, total_invoices=total_invoices, resumed=resumed,
                           console=console)
    except BaseException as error:
        console.run_failed(error)
        raise


def _passes_run(m: BackfillModels, run, *, using: str, tenant_id: str | None, batch_size: int, today: date,
                progress: BackfillProgress, shard: Shard | None, total_invoices: int, resumed: bool,
                console: "BackfillConsole | None" = None) -> BackfillSummary:
    """Pass 1 (invoices) and pass 2 (detached payments) of a created or resumed run, then complete it."""
    todo_invoices = shard_invoices(
        _scoped(m.unmigrated_invoices(using), tenant_id).filter(pk__lte=run.upper_invoice_id), shard
    )
    to_migrate = todo_invoices.filter(pk__gt=run.cursor_invoice_id).count()
    progress.started(total_invoices=total_invoices, to_migrate=to_migrate)

    statistics = GrowingTables(using=using)  # ANALYZE what it wrote, as the tables grow and at the end

    def invoices_migrated(result: BatchResult) -> None:
        for number, legacy_status in result.migrated_invoices:
            progress.invoice_migrated(number=number, legacy_status=legacy_status)
        statistics.batch_done()

    batch_number = _batches_run(
        run, todo_invoices, cursor_field="cursor_invoice_id", phase="invoices", total=to_migrate,
        migrate=lambda ids, number: invoices_migrate(
            m, using=using, invoice_ids=ids, run_id=run.pk, today=today, batch_number=number
        ),
        using=using, batch_size=batch_size, progress=progress, first_batch=1, after_commit=invoices_migrated,
        console=console,
    )
    todo_payments = shard_payments(
        _scoped(m.legacy_payments(using), tenant_id).filter(pk__lte=run.upper_payment_id), shard
    )
    _batches_run(
        run, todo_payments, cursor_field="cursor_payment_id", phase="payments",
        total=todo_payments.filter(pk__gt=run.cursor_payment_id).count(),
        migrate=lambda ids, number: detached_payments_migrate(
            m, using=using, payment_ids=ids, run_id=run.pk, today=today, batch_number=number
        ),
        using=using, batch_size=batch_size, progress=progress, first_batch=batch_number, console=console,
        after_commit=lambda _result: statistics.batch_done(),
    )
    statistics.finished()

    if console is not None:
        console.run_finishing()
    run.state = "COMPLETED"
    run.finished_at = timezone.now()
    run.save(using=using, update_fields=["state", "finished_at"])
    return BackfillSummary(
        total_invoices=total_invoices,
        counts={key: value for key, value in run.counts.items() if key not in RUN_LABELS},
        orphaned_allocations=orphaned_allocation_count(tenant_id=tenant_id, using=using),
        run_id=run.pk,
        resumed=resumed,
        dry_run=False,
    )
