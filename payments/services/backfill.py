"""The PAY-10 backfill engine: legacy invoices and payments onto the allocation model, online.

Used by `manage.py pay10_backfill`, by the data migration `payments 0003_pay10_backfill` (which
passes its historical `apps`, so nothing here imports live models) and, one row at a time, by every
service about to write to a not-yet-migrated invoice or payment (`invoice_migrate_if_needed`,
`payment_migrate_if_needed`). All three go through the same batch code: `_invoices_migrate` and
`_detached_payments_migrate` plan with `payments.domain.backfill` and write set-based.

How a run goes:
- one runner at a time (`backfill_lock`: a PostgreSQL advisory lock, or a file lock on SQLite);
- an upper bound on invoice and payment ids is fixed when a run starts (`BackfillRun`);
- pass 1, keyset batches over invoice id: each batch is ONE transaction that locks its invoices
  (`FOR UPDATE`, ascending id), then their payments, skips whatever is already migrated, writes
  every row of the batch and the run's cursor. A run killed anywhere leaves whole batches only; the
  next run resumes the newest unfinished run of the same scope, and already migrated rows are
  skipped either way, so no money row is ever written twice;
- pass 2, keyset batches over legacy payments no invoice took (unlinked, linked to another tenant's
  invoice, linked to an invoice beyond the bound);
- the readers show a not-yet-migrated invoice with its legacy paid figure and a migrated one with
  its allocations, which equal that figure exactly, so FIN-01 never moves;
- run by `pay10_backfill`, a console (`payments.services.backfill_control`) acts between batches:
  the operator's pause/resume/cancel, the adaptive batch size, waits on replication lag and long
  transactions, progress on the run row, one log line per batch, the FIN-01 parity gate.
"""
import fcntl
import gc
import hashlib
import json
import os
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Case, Exists, F, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Mod
from django.utils import timezone

from payments.domain import backfill as plan_rules
from payments.domain import status as engine
from payments.domain.backfill import InvoicePlan, LegacyInvoice, LegacyPayment, PaymentPlan
from payments.services.origin import audit_origin
from payments.services.statistics import GrowingTables

if TYPE_CHECKING:
    from payments.services.backfill_control import BackfillConsole

BACKFILL_ALREADY_RUNNING = "another PAY-10 backfill is running on this database; only one may run at a time"
BACKFILL_SHARD_ALREADY_RUNNING = (
    "shard {shard} of the PAY-10 backfill is already running on this database, or an unsharded run is"
)
BAD_SHARD = "a shard is i/K with 1 <= i <= K (e.g. 1/2), got {shard!r}"
BACKFILL_NEEDS_TRANSACTION = "migrate-if-needed runs inside the transaction of the write that needs it"
KEY_COLLISION = (
    "payment {payment} of tenant {tenant} holds idempotency key {key!r}, which the backfill needs for invoice "
    "{invoice}'s synthetic payment; give that payment another key, then run again (this batch wrote nothing)"
)
REVERSE_REFUSED = (
    "cannot reverse the PAY-10 backfill: money rows recorded after it use rows it created ({detail}); "
    "resolve them first, nothing was changed"
)

ADVISORY_LOCK_KEY = zlib.crc32(b"pay10_backfill")
DEFAULT_BATCH_SIZE = 1000
AUDIT_ACTOR = "pay10-backfill"
UNPAID = "UNPAID"  # summary bucket: every legacy status but PAID and PARTIALLY_PAID
# Keys of `BackfillRun.counts` that are not tallies: the shard's label, the console's live figures.
RUN_LABELS = ("shard", "console")

# Test hook: called as `crash_hook(stage, batch_number)` at "batch-start", "mid-batch" and
# "batch-end" (after the cursor is written, before commit). Tests make it raise to simulate a kill.
crash_hook: Callable[[str, int], None] | None = None


class BackfillError(Exception):
    """A refusal with a one-line message for the operator."""


class _DryRunRollback(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Models: from the live registry or a migration's historical one.


class _Models:
    def __init__(self, apps) -> None:
        self.Tenant = apps.get_model("billing", "Tenant")
        self.Invoice = apps.get_model("billing", "Invoice")
        self.Payment = apps.get_model("payments", "Payment")
        self.Allocation = apps.get_model("payments", "Allocation")
        self.AllocationReversal = apps.get_model("payments", "AllocationReversal")
        self.Credit = apps.get_model("payments", "Credit")
        self.Refund = apps.get_model("payments", "Refund")
        self.PaymentAuditLog = apps.get_model("payments", "PaymentAuditLog")
        self.BackfillRun = apps.get_model("payments", "BackfillRun")
        self.InvoiceMigration = apps.get_model("payments", "InvoiceMigration")
        self.PaymentMigration = apps.get_model("payments", "PaymentMigration")
        self.BackfillDeviation = apps.get_model("payments", "BackfillDeviation")

    def legacy_payments(self, using: str):
        """Legacy payment rows the backfill has not mapped yet (PAY-10 payments carry a verification status)."""
        return self.Payment.objects.using(using).filter(verification_status__isnull=True).exclude(
            Exists(self.PaymentMigration.objects.filter(payment_id=OuterRef("pk")))
        )

    def unmigrated_invoices(self, using: str):
        return self.Invoice.objects.using(using).exclude(
            Exists(self.InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))
        )


# --------------------------------------------------------------------------------------------
# Single runner, or K shards


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): invoices with `id % count == index - 1`, and legacy
    payments whose owner id does: the owner is the invoice when the payment is linked to one of its
    own tenant (so a shard never touches another shard's invoices), the payment itself otherwise."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(BAD_SHARD.format(shard=f"{self.index}/{self.count}"))

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`"i/K"` -> Shard(i, K); ValueError(BAD_SHARD) otherwise."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.isdigit() or not count.isdigit():
            raise ValueError(BAD_SHARD.format(shard=text))
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise ValueError(BAD_SHARD.format(shard=text)) from None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def lock_key(self) -> int:
        return zlib.crc32(f"pay10_backfill:{self.label}".encode())

    def invoices(self, queryset):
        return queryset.alias(pay10_shard=Mod("pk", Value(self.count))).filter(pay10_shard=self.index - 1)

    def payments(self, queryset):
        owner = Case(When(tenant_id=F("invoice__tenant_id"), then=F("invoice_id")), default=F("pk"))
        return queryset.alias(pay10_shard=Mod(owner, Value(self.count))).filter(pay10_shard=self.index - 1)


def _shard_invoices(queryset, shard: Shard | None):
    return queryset if shard is None else shard.invoices(queryset)


def _shard_payments(queryset, shard: Shard | None):
    return queryset if shard is None else shard.payments(queryset)


def _sqlite_lock_path(connection, *, shard: Shard | None = None) -> Path:
    """The lock file of one SQLite database (and shard): in the temp dir, named after the database
    file's absolute path (an in-memory database lives in one process only, so its pid names it)."""
    name = str(connection.settings_dict["NAME"])
    if connection.is_in_memory_db():
        key = f"{name}:{os.getpid()}"
    else:
        key = str(Path(name).resolve())
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    suffix = f"-shard-{shard.index}-of-{shard.count}" if shard else ""
    return Path(tempfile.gettempdir()) / f"pay10_backfill-{digest}{suffix}.lock"


@contextmanager
def backfill_lock(*, using: str = DEFAULT_DB_ALIAS, shard: Shard | None = None) -> Iterator[None]:
    """Hold the runner lock, or raise `BackfillError` at once.

    An unsharded run holds the backfill lock exclusively: it refuses while any run or shard runs. A
    shard holds it shared (shards run together, an unsharded run refuses) plus its own shard lock
    exclusively (two runs of the same shard refuse).
    """
    connection = connections[using]
    refused = BACKFILL_ALREADY_RUNNING if shard is None else BACKFILL_SHARD_ALREADY_RUNNING.format(shard=shard.label)
    if connection.vendor == "postgresql":
        held: list[str] = []
        try:
            with connection.cursor() as cursor:
                if shard is None:
                    steps = [("pg_try_advisory_lock", "pg_advisory_unlock", ADVISORY_LOCK_KEY)]
                else:
                    steps = [
                        ("pg_try_advisory_lock_shared", "pg_advisory_unlock_shared", ADVISORY_LOCK_KEY),
                        ("pg_try_advisory_lock", "pg_advisory_unlock", shard.lock_key),
                    ]
                for take, release, key in steps:
                    cursor.execute(f"SELECT {take}(%s)", [key])
                    if not cursor.fetchone()[0]:
                        raise BackfillError(refused)
                    held.append(f"SELECT {release}({key})")
            yield
        finally:
            with connection.cursor() as cursor:
                for statement in reversed(held):
                    cursor.execute(statement)
        return
    locks = [(_sqlite_lock_path(connection), fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH)]
    if shard is not None:
        locks.append((_sqlite_lock_path(connection, shard=shard), fcntl.LOCK_EX))
    files = []
    try:
        for path, mode in locks:
            lock_file = open(path, "a")
            files.append(lock_file)
            try:
                fcntl.flock(lock_file, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackfillError(refused) from None
        yield
    finally:
        for lock_file in reversed(files):
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()


# --------------------------------------------------------------------------------------------
# One batch: lock, plan, write.


@dataclass
class BatchResult:
    by_legacy_status: Counter = field(default_factory=Counter)
    payments: int = 0
    synthetic_payments: int = 0
    allocations: int = 0
    credits: int = 0
    deviations: int = 0
    statuses_changed: int = 0
    migrated_payment_ids: set[int] = field(default_factory=set)
    migrated_invoices: list[tuple[str, str]] = field(default_factory=list)  # (number, legacy status)

    def add(self, other: "BatchResult") -> None:
        self.by_legacy_status.update(other.by_legacy_status)
        self.payments += other.payments
        self.synthetic_payments += other.synthetic_payments
        self.allocations += other.allocations
        self.credits += other.credits
        self.deviations += other.deviations
        self.statuses_changed += other.statuses_changed
        self.migrated_payment_ids |= other.migrated_payment_ids
        self.migrated_invoices += other.migrated_invoices

    def counts(self) -> dict[str, int]:
        return {
            engine.PAID: self.by_legacy_status[engine.PAID],
            engine.PARTIALLY_PAID: self.by_legacy_status[engine.PARTIALLY_PAID],
            UNPAID: sum(n for s, n in self.by_legacy_status.items() if s not in (engine.PAID, engine.PARTIALLY_PAID)),
            "payments": self.payments,
            "syntheticPayments": self.synthetic_payments,
            "allocations": self.allocations,
            "credits": self.credits,
            "deviations": self.deviations,
            "statusesChanged": self.statuses_changed,
        }


PAYMENT_FIELDS = ("id", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "status", "received_at")
INVOICE_FIELDS = (
    "id", "tenant_id", "number", "currency", "status", "amount_cents", "amount_paid_cents",
    "due_date", "issued_at", "paid_at", "created_at",
)


def _tenant_currencies(m: _Models, using: str, tenant_ids: Iterable[str]) -> dict[str, str]:
    return dict(m.Tenant.objects.using(using).filter(pk__in=set(tenant_ids)).values_list("pk", "currency"))


def _locked_payment_rows(m: _Models, using: str, queryset) -> list[dict]:
    """Lock the payments (ascending id) and return those still unmapped, read after the lock."""
    ids = list(queryset.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
    if not ids:
        return []
    # Re-read after the lock: a concurrent writer may have migrated some while we waited.
    return list(
        m.legacy_payments(using)
        .filter(pk__in=ids)
        .order_by("pk")
        .values(*PAYMENT_FIELDS, invoice_tenant_id=F("invoice__tenant_id"), invoice_number=F("invoice__number"))
    )


def _legacy_payment(row: dict, currencies: dict[str, str]) -> LegacyPayment:
    return LegacyPayment(
        id=row["id"],
        tenant_id=row["tenant_id"],
        tenant_currency=currencies[row["tenant_id"]],
        invoice_id=row["invoice_id"],
        invoice_tenant_id=row["invoice_tenant_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        method=row["method"],
        status=row["status"],
        received_at=row["received_at"],
        invoice_number=row["invoice_number"] or "",
    )


# A batch's reads. On PostgreSQL raw SQL with one array parameter (`= ANY(%s::bigint[])`) instead of
# an `IN (...)` list of thousands of placeholders, rows as tuples straight into the planner's
# dataclasses, the tenant's currency joined in; the same rows, locks and lock order as the ORM
# path: lock the invoices (ascending id) and keep those not migrated (marker read after the lock),
# lock their legacy payments (ascending id) and keep those still unmapped (read after that lock).


def _ids_literal(ids: Iterable[int]) -> str:
    """An integer array as one text parameter (`'{1,2,3}'`, cast in the SQL): psycopg's client-side
    binding otherwise quotes every element in Python. Integers only; anything else fails the cast."""
    return "{" + ",".join(map(str, ids)) + "}"


@contextmanager
def _pg_cursor(using: str) -> Iterator:
    """A cursor of the connection whose timestamptz columns load with psycopg's C loader when the
    session's zone is UTC (Django's own loader is pure Python; both give UTC-aware datetimes)."""
    with connections[using].cursor() as cursor:
        raw = cursor.cursor
        if raw.connection.info.parameter_status("TimeZone") == "UTC":
            from psycopg.types.datetime import TimestamptzLoader

            raw.adapters.register_loader("timestamptz", TimestamptzLoader)
        yield cursor


def _orm_locked_invoice_batch(
    m: _Models, using: str, ids: list[int]
) -> tuple[dict[int, LegacyInvoice], dict[int, object], list[LegacyPayment]]:
    """Lock the invoices and their legacy payments of the same tenant; return the invoices not
    migrated yet (read after the lock), their `updated_at`, and those payments still unmapped
    (read after their lock)."""
    list(m.Invoice.objects.using(using).select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))
    # Read after the lock, so an invoice migrated meanwhile by an online write is skipped.
    rows = list(
        m.unmigrated_invoices(using).filter(pk__in=ids).order_by("pk").values(*INVOICE_FIELDS, "updated_at")
    )
    if not rows:
        return {}, {}, []
    invoices = {row["id"]: LegacyInvoice(**{name: row[name] for name in INVOICE_FIELDS}) for row in rows}
    updated_at = {row["id"]: row["updated_at"] for row in rows}
    payment_rows = _locked_payment_rows(
        m,
        using,
        m.legacy_payments(using).filter(invoice_id__in=list(invoices), tenant_id=F("invoice__tenant_id")),
    )
    currencies = _tenant_currencies(m, using, [row["tenant_id"] for row in payment_rows])
    return invoices, updated_at, [_legacy_payment(row, currencies) for row in payment_rows]


def _orm_locked_payments(m: _Models, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """Lock these payments (ascending id) and return those still unmapped, read after the lock."""
    payment_rows = _locked_payment_rows(m, using, m.Payment.objects.using(using).filter(pk__in=payment_ids))
    currencies = _tenant_currencies(m, using, [row["tenant_id"] for row in payment_rows])
    return [_legacy_payment(row, currencies) for row in payment_rows]


def _pg_locked_invoice_batch(
    m: _Models, using: str, ids: list[int]
) -> tuple[dict[int, LegacyInvoice], dict[int, object], list[LegacyPayment]]:
    """`_orm_locked_invoice_batch` on PostgreSQL: the same rows, locks and lock order."""
    invoice_table = _quote(m.Invoice._meta.db_table)
    migration_table = _quote(m.InvoiceMigration._meta.db_table)
    payment_table = _quote(m.Payment._meta.db_table)
    payment_migration_table = _quote(m.PaymentMigration._meta.db_table)
    with _pg_cursor(using) as cursor:
        # FOR UPDATE returns each row as it is once locked (the newest committed version), so the
        # invoice's columns need no second read; whether it is migrated is read by the next
        # statement, after the lock, so an invoice migrated meanwhile by an online write is skipped.
        cursor.execute(
            "SELECT id, tenant_id, number, currency, status, amount_cents, amount_paid_cents, due_date, issued_at, "
            f"paid_at, created_at, updated_at FROM {invoice_table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            [_ids_literal(ids)],
        )
        rows = cursor.fetchall()
        cursor.execute(
            f"SELECT invoice_id FROM {migration_table} WHERE invoice_id = ANY(%s::bigint[])", [_ids_literal(ids)]
        )
        migrated = {row[0] for row in cursor.fetchall()}
        invoices: dict[int, LegacyInvoice] = {}
        updated_at: dict[int, object] = {}
        for row in rows:
            if row[0] not in migrated:
                invoices[row[0]] = LegacyInvoice(*row[:11])
                updated_at[row[0]] = row[11]
        if not invoices:
            return invoices, updated_at, []
        # Their legacy payments of the same tenant, locked ascending and returned as locked (the
        # newest version: `verification_status IS NULL` is re-checked on it); their invoices are
        # locked by this transaction, so the joined invoice columns cannot change under it.
        cursor.execute(
            "SELECT p.id, p.tenant_id, t.currency, p.invoice_id, i.tenant_id, p.amount_cents, p.currency, p.method, "
            "p.status, p.received_at, coalesce(i.number, '') "
            f"FROM {payment_table} p JOIN {invoice_table} i ON i.id = p.invoice_id "
            f"JOIN {_quote(m.Tenant._meta.db_table)} t ON t.id = p.tenant_id "
            "WHERE p.invoice_id = ANY(%s::bigint[]) AND p.tenant_id = i.tenant_id AND p.verification_status IS NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {payment_migration_table} pm WHERE pm.payment_id = p.id) "
            "ORDER BY p.id FOR UPDATE OF p",
            [_ids_literal(invoices)],
        )
        rows = cursor.fetchall()
        if not rows:
            return invoices, updated_at, []
        # Read after the lock: a payment mapped meanwhile by a writer that held it before us.
        cursor.execute(
            f"SELECT payment_id FROM {payment_migration_table} WHERE payment_id = ANY(%s::bigint[])",
            [_ids_literal(row[0] for row in rows)],
        )
        mapped = {row[0] for row in cursor.fetchall()}
        return invoices, updated_at, [LegacyPayment(*row) for row in rows if row[0] not in mapped]


def _pg_locked_payments(m: _Models, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """`_orm_locked_payments` on PostgreSQL."""
    with _pg_cursor(using) as cursor:
        cursor.execute(
            f"SELECT id FROM {_quote(m.Payment._meta.db_table)} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            [_ids_literal(payment_ids)],
        )
        return _pg_unmapped_payments(m, cursor, [row[0] for row in cursor.fetchall()])


def _pg_unmapped_payments(m: _Models, cursor, ids: list[int]) -> list[LegacyPayment]:
    """The legacy payments among `ids` the backfill has not mapped yet, ascending id (a new
    statement, so it sees what a writer that held a lock before us committed)."""
    if not ids:
        return []
    cursor.execute(
        "SELECT p.id, p.tenant_id, t.currency, p.invoice_id, i.tenant_id, p.amount_cents, p.currency, p.method, "
        "p.status, p.received_at, coalesce(i.number, '') "
        f"FROM {_quote(m.Payment._meta.db_table)} p "
        f"JOIN {_quote(m.Tenant._meta.db_table)} t ON t.id = p.tenant_id "
        f"LEFT JOIN {_quote(m.Invoice._meta.db_table)} i ON i.id = p.invoice_id "
        "WHERE p.id = ANY(%s::bigint[]) AND p.verification_status IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {_quote(m.PaymentMigration._meta.db_table)} pm WHERE pm.payment_id = p.id) "
        "ORDER BY p.id",
        [_ids_literal(ids)],
    )
    return [LegacyPayment(*row) for row in cursor.fetchall()]


def _invoices_migrate(
    m: _Models, *, using: str, invoice_ids: Iterable[int], run_id: int | None, today: date, batch_number: int = 0
) -> BatchResult:
    """Migrate these invoices (those not migrated yet) and their legacy payments of the same tenant.

    Runs in the caller's transaction; locks invoices, then payments, ascending.
    """
    ids = sorted(set(invoice_ids))
    if not ids:
        return BatchResult()
    locked_batch = _pg_locked_invoice_batch if connections[using].vendor == "postgresql" else _orm_locked_invoice_batch
    invoices, updated_at, legacy_payments = locked_batch(m, using, ids)
    if not invoices:
        return BatchResult()
    payments_by_invoice: dict[int, list[LegacyPayment]] = defaultdict(list)
    for payment in legacy_payments:
        payments_by_invoice[payment.invoice_id].append(payment)
    plans = [
        plan_rules.plan_invoice(invoice=invoice, payments=payments_by_invoice[invoice.id], today=today)
        for invoice in invoices.values()
    ]
    return _write(
        m, using=using, invoice_plans=plans, payment_plans=[], run_id=run_id, legacy_updated_at=updated_at,
        batch_number=batch_number,
    )


def _detached_payments_migrate(
    m: _Models, *, using: str, payment_ids: Iterable[int], run_id: int | None, today: date, batch_number: int = 0
) -> BatchResult:
    """Migrate these legacy payments: those linked to an unmigrated invoice of their own tenant go
    with that invoice (locked first); the rest are planned alone."""
    ids = sorted(set(payment_ids))
    result = BatchResult()
    if not ids:
        return result
    with_own_invoice = (
        m.legacy_payments(using)
        .filter(pk__in=ids, tenant_id=F("invoice__tenant_id"))
        .filter(Exists(m.unmigrated_invoices(using).filter(pk=OuterRef("invoice_id"))))
        .values_list("invoice_id", flat=True)
    )
    result.add(
        _invoices_migrate(
            m, using=using, invoice_ids=set(with_own_invoice), run_id=run_id, today=today, batch_number=batch_number
        )
    )
    locked_payments = _pg_locked_payments if connections[using].vendor == "postgresql" else _orm_locked_payments
    legacy_payments = locked_payments(m, using, payment_ids=ids)
    if not legacy_payments:
        return result
    linked = {payment.invoice_id for payment in legacy_payments if payment.invoice_id is not None}
    migrated_invoices = set(
        m.InvoiceMigration.objects.using(using).filter(invoice_id__in=linked).values_list("invoice_id", flat=True)
    )
    plans = []
    for payment in legacy_payments:
        same_tenant_link = payment.invoice_id is not None and payment.invoice_tenant_id == payment.tenant_id
        if same_tenant_link and payment.invoice_id not in migrated_invoices:
            continue  # its invoice is locked by another writer's transaction; it takes the payment
        plans.append(plan_rules.plan_detached_payment(payment=payment, invoice_migrated=same_tenant_link))
    result.add(
        _write(
            m, using=using, invoice_plans=[], payment_plans=plans, run_id=run_id, legacy_updated_at={},
            batch_number=batch_number,
        )
    )
    return result


def _hook(stage: str, batch_number: int) -> None:
    if crash_hook is not None:
        crash_hook(stage, batch_number)


def _write(
    m: _Models,
    *,
    using: str,
    invoice_plans: list[InvoicePlan],
    payment_plans: list[PaymentPlan],
    run_id: int | None,
    legacy_updated_at: dict,
    batch_number: int,
) -> BatchResult:
    """Write the plans: a fixed handful of set-based statements whatever the batch size (COPY on
    PostgreSQL, bulk_create elsewhere; the same rows and values either way)."""
    _key_collision_check(m, using=using, invoice_plans=invoice_plans)
    writer = _write_copy if connections[using].vendor == "postgresql" else _write_orm
    return writer(
        m, using=using, invoice_plans=invoice_plans, payment_plans=payment_plans, run_id=run_id,
        legacy_updated_at=legacy_updated_at, batch_number=batch_number,
    )


def _key_collision_check(m: _Models, *, using: str, invoice_plans: list[InvoicePlan]) -> None:
    """Refuse the batch (`BackfillError`, before writing anything) when a payment already holds the
    idempotency key of a synthetic payment it would create (a client's key in the reserved
    `pay10-backfill:` namespace, recorded before the API refused them). One indexed query."""
    wanted = {(plan.synthetic.tenant_id, plan.synthetic.idempotency_key): plan.synthetic.invoice_id
              for plan in invoice_plans if plan.synthetic is not None}
    if not wanted:
        return
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant_id, key in wanted:
        by_tenant[tenant_id].append(key)
    condition = Q()
    for tenant_id, keys in by_tenant.items():
        condition |= Q(tenant_id=tenant_id, idempotency_key__in=keys)
    taken = m.Payment.objects.using(using).filter(condition).order_by("pk").values_list("pk", "tenant_id", "idempotency_key")
    for payment_id, tenant_id, key in taken[:1]:
        raise BackfillError(
            KEY_COLLISION.format(payment=payment_id, tenant=tenant_id, key=key, invoice=wanted[(tenant_id, key)])
        )


def _write_orm(
    m: _Models,
    *,
    using: str,
    invoice_plans: list[InvoicePlan],
    payment_plans: list[PaymentPlan],
    run_id: int | None,
    legacy_updated_at: dict,
    batch_number: int,
) -> BatchResult:
    """`_write` with model instances and bulk_create (SQLite)."""
    now = timezone.now()
    result = BatchResult()
    all_payment_plans = [p for plan in invoice_plans for p in plan.payments] + payment_plans

    synthetic_rows = [
        m.Payment(
            tenant_id=plan.synthetic.tenant_id,
            invoice_id=plan.synthetic.invoice_id,
            amount_cents=plan.synthetic.amount_cents,
            currency=plan.synthetic.currency,
            method=plan_rules.SYNTHETIC_METHOD,
            reference=plan.synthetic.idempotency_key,
            status=plan_rules.SUCCEEDED,
            received_at=plan.synthetic.received_at,
            created_at=now,
            channel=plan_rules.SYNTHETIC_CHANNEL,
            verification_status="VERIFIED",
            idempotency_key=plan.synthetic.idempotency_key,
        )
        for plan in invoice_plans
        if plan.synthetic is not None
    ]
    m.Payment.objects.using(using).bulk_create(synthetic_rows)
    synthetic_ids = {row.invoice_id: row.pk for row in synthetic_rows}

    mappings: dict[tuple[str, str], list[int]] = defaultdict(list)
    for plan in all_payment_plans:
        mappings[(plan.channel, plan.verification_status)].append(plan.payment.id)
    for (channel, verification_status), ids in mappings.items():
        m.Payment.objects.using(using).filter(pk__in=ids).update(channel=channel, verification_status=verification_status)

    allocation_rows = [
        m.Allocation(
            tenant_id=planned.tenant_id,
            invoice_id=planned.invoice_id,
            payment_id=planned.payment_id if planned.payment_id is not None else synthetic_ids[planned.invoice_id],
            amount_cents=planned.amount_cents,
            backfilled=True,
            created_at=now,
        )
        for plan in invoice_plans
        for planned in plan.allocations
    ]
    m.Allocation.objects.using(using).bulk_create(allocation_rows)

    credit_rows = [
        m.Credit(
            tenant_id=plan.credit.tenant_id,
            currency=plan.credit.currency,
            amount_cents=plan.credit.amount_cents,
            source_payment_id=plan.credit.source_payment_id,
            reason=plan.credit.reason,
            backfilled=True,
            created_at=now,
        )
        for plan in all_payment_plans
        if plan.credit is not None
    ]
    m.Credit.objects.using(using).bulk_create(credit_rows)
    credit_by_payment = {row.source_payment_id: row for row in credit_rows}

    m.InvoiceMigration.objects.using(using).bulk_create(
        m.InvoiceMigration(
            invoice_id=plan.invoice.id,
            run_id=run_id,
            legacy_status=plan.invoice.status,
            legacy_amount_paid_cents=plan.invoice.amount_paid_cents,
            legacy_paid_cents=plan.legacy_paid_cents,
            legacy_updated_at=legacy_updated_at.get(plan.invoice.id),
            migrated_at=now,
        )
        for plan in invoice_plans
    )
    m.PaymentMigration.objects.using(using).bulk_create(
        m.PaymentMigration(payment_id=plan.payment.id, run_id=run_id, migrated_at=now) for plan in all_payment_plans
    )
    _hook("mid-batch", batch_number)

    by_new_status: dict[str, list[int]] = defaultdict(list)
    for plan in invoice_plans:
        if plan.new_status != plan.invoice.status:
            by_new_status[plan.new_status].append(plan.invoice.id)
    for new_status, ids in by_new_status.items():
        m.Invoice.objects.using(using).filter(pk__in=ids).update(status=new_status, updated_at=now)

    deviations = [d for plan in invoice_plans for d in plan.deviations]
    deviations += [d for plan in all_payment_plans for d in plan.deviations]
    m.BackfillDeviation.objects.using(using).bulk_create(
        m.BackfillDeviation(
            run_id=run_id,
            kind=d.kind,
            tenant_id=d.tenant_id,
            invoice_id=d.invoice_id,
            invoice_number=d.invoice_number,
            payment_id=synthetic_ids[d.invoice_id] if d.synthetic else d.payment_id,
            legacy=d.legacy,
            new=d.new,
            detail=d.detail[:255],
            created_at=now,
        )
        for d in deviations
    )

    allocations_by_invoice: dict[int, list] = defaultdict(list)
    allocations_by_payment: dict[int, list] = defaultdict(list)
    for row in allocation_rows:
        allocations_by_invoice[row.invoice_id].append(row)
        allocations_by_payment[row.payment_id].append(row)

    def listed(rows) -> list[dict]:
        return [{"allocationId": r.pk, "invoiceId": r.invoice_id, "paymentId": r.payment_id, "amountCents": r.amount_cents}
                for r in rows]

    audit_rows = []
    origin = audit_origin()
    for plan in invoice_plans:
        invoice = plan.invoice
        synthetic_id = synthetic_ids.get(invoice.id)
        audit_rows.append(
            m.PaymentAuditLog(
                tenant_id=invoice.tenant_id,
                actor_label=AUDIT_ACTOR,
                event_type="INVOICE_BACKFILLED",
                event_time=now,
                invoice_id=invoice.id,
                payment_id=synthetic_id,
                amount_cents=plan.legacy_paid_cents,
                before={"status": invoice.status, "amountPaidCents": invoice.amount_paid_cents},
                after={
                    "status": plan.new_status,
                    "paidCents": plan.legacy_paid_cents,
                    "allocations": listed(allocations_by_invoice[invoice.id]),
                    "syntheticPaymentId": synthetic_id,
                    "syntheticPaymentCents": plan.synthetic.amount_cents if plan.synthetic else 0,
                },
                extra={"runId": run_id, "deviations": [d.kind for d in plan.deviations], "origin": origin},
                backfilled=True,
            )
        )
    for plan in all_payment_plans:
        payment = plan.payment
        credit = credit_by_payment.get(payment.id)
        audit_rows.append(
            m.PaymentAuditLog(
                tenant_id=payment.tenant_id,
                actor_label=AUDIT_ACTOR,
                event_type="PAYMENT_BACKFILLED",
                event_time=now,
                invoice_id=payment.invoice_id,
                payment_id=payment.id,
                credit_id=credit.pk if credit else None,
                amount_cents=payment.amount_cents,
                before={"status": payment.status, "method": payment.method},
                after={
                    "channel": plan.channel,
                    "verificationStatus": plan.verification_status,
                    "allocations": listed(allocations_by_payment[payment.id]),
                    "credit": {"creditId": credit.pk, "amountCents": credit.amount_cents, "reason": credit.reason}
                    if credit
                    else None,
                },
                extra={"runId": run_id, "deviations": [d.kind for d in plan.deviations], "origin": origin},
                backfilled=True,
            )
        )
    m.PaymentAuditLog.objects.using(using).bulk_create(audit_rows)

    for plan in invoice_plans:
        result.by_legacy_status[plan.invoice.status] += 1
        result.migrated_invoices.append((plan.invoice.number, plan.invoice.status))
    result.payments = len(all_payment_plans)
    result.migrated_payment_ids = {plan.payment.id for plan in all_payment_plans}
    result.synthetic_payments = len(synthetic_rows)
    result.allocations = len(allocation_rows)
    result.credits = len(credit_rows)
    result.deviations = len(deviations)
    result.statuses_changed = sum(len(ids) for ids in by_new_status.values())
    return result


def _tally(result: BatchResult, invoice_plans: list[InvoicePlan], all_payment_plans: list[PaymentPlan]) -> None:
    for plan in invoice_plans:
        result.by_legacy_status[plan.invoice.status] += 1
        result.migrated_invoices.append((plan.invoice.number, plan.invoice.status))
    result.payments = len(all_payment_plans)
    result.migrated_payment_ids = {plan.payment.id for plan in all_payment_plans}


def _next_ids(cursor, table: str, count: int) -> list[int]:
    """`count` fresh ids from the table's identity sequence, ascending (one round trip)."""
    if not count:
        return []
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
    )
    return sorted(row[0] for row in cursor.fetchall())


def _copy_rows(cursor, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Stream rows into the table with COPY (text format: psycopg adapts each Python value)."""
    statement = f"COPY {_quote(table)} ({', '.join(columns)}) FROM STDIN"
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _JsonMemo(dict):
    """`json.dumps` of hashable values, each computed once (a tuple is dumped as a JSON array)."""

    def __missing__(self, value) -> str:
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
        self[value] = text
        return text


def _json_int(value) -> str:
    """JSON text of an integer column value (or null), as `json.dumps` writes it."""
    if value is None:
        return "null"
    if type(value) is not int:
        return json.dumps(value)
    return str(value)


def _write_copy(
    m: _Models,
    *,
    using: str,
    invoice_plans: list[InvoicePlan],
    payment_plans: list[PaymentPlan],
    run_id: int | None,
    legacy_updated_at: dict,
    batch_number: int,
) -> BatchResult:
    """`_write` on PostgreSQL: the same rows and values, streamed with COPY.

    Ids the batch refers to (synthetic payments, allocations, credits) are drawn from their
    sequences first, in one statement each, so no model instance is built and no row is read back.
    JSON columns get their text, built once per row.
    """
    now = timezone.now()
    result = BatchResult()
    all_payment_plans = [p for plan in invoice_plans for p in plan.payments] + payment_plans
    payment_table = m.Payment._meta.db_table
    allocation_table = m.Allocation._meta.db_table
    credit_table = m.Credit._meta.db_table
    dumps = json.dumps

    synthetics = [plan.synthetic for plan in invoice_plans if plan.synthetic is not None]
    planned_allocations = [planned for plan in invoice_plans for planned in plan.allocations]
    planned_credits = [plan.credit for plan in all_payment_plans if plan.credit is not None]

    with connections[using].cursor() as cursor:
        synthetic_ids = dict(
            zip((s.invoice_id for s in synthetics), _next_ids(cursor, payment_table, len(synthetics)))
        )
        allocation_ids = _next_ids(cursor, allocation_table, len(planned_allocations))
        credit_ids = _next_ids(cursor, credit_table, len(planned_credits))

        _copy_rows(
            cursor, payment_table,
            ("id", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "reference", "status",
             "received_at", "created_at", "channel", "verification_status", "idempotency_key"),
            (
                (synthetic_ids[s.invoice_id], s.tenant_id, s.invoice_id, s.amount_cents, s.currency,
                 plan_rules.SYNTHETIC_METHOD, s.idempotency_key, plan_rules.SUCCEEDED, s.received_at, now,
                 plan_rules.SYNTHETIC_CHANNEL, "VERIFIED", s.idempotency_key)
                for s in synthetics
            ),
        )

        # Every mapped payment in one statement: each payment's (channel, verification status) is
        # sent as its ordinal in the short list of distinct pairs.
        if all_payment_plans:
            pairs: dict[tuple[str, str], int] = {}
            ordinals = [
                pairs.setdefault((plan.channel, plan.verification_status), len(pairs) + 1) for plan in all_payment_plans
            ]
            cursor.execute(
                f"UPDATE {_quote(payment_table)} p "
                "SET channel = m.channel, verification_status = m.verification_status "
                "FROM unnest(%s::bigint[], %s::int[]) AS v(id, k) "
                "JOIN unnest(%s::text[], %s::text[]) WITH ORDINALITY AS m(channel, verification_status, k) "
                "ON m.k = v.k WHERE p.id = v.id",
                [
                    _ids_literal(plan.payment.id for plan in all_payment_plans),
                    _ids_literal(ordinals),
                    [channel for channel, _ in pairs],
                    [verification_status for _, verification_status in pairs],
                ],
            )

        # (id, invoice_id, payment_id, amount_cents) of every allocation, for the rows and the audit.
        allocations = [
            (allocation_id, planned.invoice_id,
             planned.payment_id if planned.payment_id is not None else synthetic_ids[planned.invoice_id],
             planned.amount_cents, planned.tenant_id)
            for allocation_id, planned in zip(allocation_ids, planned_allocations)
        ]
        _copy_rows(
            cursor, allocation_table,
            ("id", "invoice_id", "payment_id", "amount_cents", "tenant_id", "backfilled", "created_at"),
            ((*row, True, now) for row in allocations),
        )

        credit_by_payment = {
            credit.source_payment_id: (credit_id, credit) for credit_id, credit in zip(credit_ids, planned_credits)
        }
        _copy_rows(
            cursor, credit_table,
            ("id", "tenant_id", "currency", "amount_cents", "source_payment_id", "reason", "backfilled", "created_at"),
            (
                (credit_id, c.tenant_id, c.currency, c.amount_cents, c.source_payment_id, c.reason, True, now)
                for credit_id, c in zip(credit_ids, planned_credits)
            ),
        )

        _copy_rows(
            cursor, m.InvoiceMigration._meta.db_table,
            ("invoice_id", "run_id", "legacy_status", "legacy_amount_paid_cents", "legacy_paid_cents",
             "legacy_updated_at", "migrated_at"),
            (
                (plan.invoice.id, run_id, plan.invoice.status, plan.invoice.amount_paid_cents, plan.legacy_paid_cents,
                 legacy_updated_at.get(plan.invoice.id), now)
                for plan in invoice_plans
            ),
        )
        _copy_rows(
            cursor, m.PaymentMigration._meta.db_table,
            ("payment_id", "run_id", "migrated_at"),
            ((plan.payment.id, run_id, now) for plan in all_payment_plans),
        )
        _hook("mid-batch", batch_number)

        by_new_status: dict[str, list[int]] = defaultdict(list)
        for plan in invoice_plans:
            if plan.new_status != plan.invoice.status:
                by_new_status[plan.new_status].append(plan.invoice.id)
        changed = [(invoice_id, new_status) for new_status, ids in by_new_status.items() for invoice_id in ids]
        if changed:
            cursor.execute(
                f"UPDATE {_quote(m.Invoice._meta.db_table)} i SET status = v.status, updated_at = %s "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, status) WHERE i.id = v.id",
                [now, _ids_literal(invoice_id for invoice_id, _ in changed), [new_status for _, new_status in changed]],
            )

        deviations = [d for plan in invoice_plans for d in plan.deviations]
        deviations += [d for plan in all_payment_plans for d in plan.deviations]
        _copy_rows(
            cursor, m.BackfillDeviation._meta.db_table,
            ("run_id", "kind", "tenant_id", "invoice_id", "invoice_number", "payment_id", "legacy", "new", "detail",
             "created_at"),
            (
                (run_id, d.kind, d.tenant_id, d.invoice_id, d.invoice_number,
                 synthetic_ids[d.invoice_id] if d.synthetic else d.payment_id, dumps(d.legacy), dumps(d.new),
                 d.detail[:255], now)
                for d in deviations
            ),
        )

        # The audit payloads as JSON text built from fixed-shape templates (the same documents
        # `json.dumps` of the dicts gives, jsonb keeps no formatting): each allocation is listed by
        # its invoice's and its payment's row, so its text is built once; strings go through
        # `json.dumps` (memoised: statuses, channels, deviation kinds repeat), integers are written
        # as they are.
        text = _JsonMemo()
        allocations_by_invoice: dict[int, list[str]] = defaultdict(list)
        allocations_by_payment: dict[int, list[str]] = defaultdict(list)
        for allocation_id, invoice_id, payment_id, amount_cents, _tenant in allocations:
            listed = (
                f'{{"allocationId": {_json_int(allocation_id)}, "invoiceId": {_json_int(invoice_id)}, '
                f'"paymentId": {_json_int(payment_id)}, "amountCents": {_json_int(amount_cents)}}}'
            )
            allocations_by_invoice[invoice_id].append(listed)
            allocations_by_payment[payment_id].append(listed)
        run_text = _json_int(run_id)
        origin_text = dumps(audit_origin())

        def extra(plan) -> str:
            kinds = text[tuple(d.kind for d in plan.deviations)]
            return f'{{"runId": {run_text}, "deviations": {kinds}, "origin": {origin_text}}}'

        def invoice_audit(plan: InvoicePlan) -> tuple:
            invoice = plan.invoice
            synthetic_id = synthetic_ids.get(invoice.id)
            paid = _json_int(plan.legacy_paid_cents)
            return (
                invoice.tenant_id, AUDIT_ACTOR, "INVOICE_BACKFILLED", now, invoice.id, synthetic_id, None,
                plan.legacy_paid_cents,
                f'{{"status": {text[invoice.status]}, "amountPaidCents": {_json_int(invoice.amount_paid_cents)}}}',
                f'{{"status": {text[plan.new_status]}, "paidCents": {paid}, '
                f'"allocations": [{", ".join(allocations_by_invoice.get(invoice.id, ()))}], '
                f'"syntheticPaymentId": {_json_int(synthetic_id)}, '
                f'"syntheticPaymentCents": {_json_int(plan.synthetic.amount_cents if plan.synthetic else 0)}}}',
                extra(plan),
                True,
            )

        def payment_audit(plan: PaymentPlan) -> tuple:
            payment = plan.payment
            credit_id, credit = credit_by_payment.get(payment.id, (None, None))
            credit_text = (
                f'{{"creditId": {_json_int(credit_id)}, "amountCents": {_json_int(credit.amount_cents)}, '
                f'"reason": {dumps(credit.reason)}}}'
                if credit
                else "null"
            )
            return (
                payment.tenant_id, AUDIT_ACTOR, "PAYMENT_BACKFILLED", now, payment.invoice_id, payment.id, credit_id,
                payment.amount_cents,
                f'{{"status": {text[payment.status]}, "method": {text[payment.method]}}}',
                f'{{"channel": {text[plan.channel]}, "verificationStatus": {text[plan.verification_status]}, '
                f'"allocations": [{", ".join(allocations_by_payment.get(payment.id, ()))}], "credit": {credit_text}}}',
                extra(plan),
                True,
            )

        _copy_rows(
            cursor, m.PaymentAuditLog._meta.db_table,
            ("tenant_id", "actor_label", "event_type", "event_time", "invoice_id", "payment_id", "credit_id",
             "amount_cents", "before", "after", "extra", "backfilled"),
            [invoice_audit(plan) for plan in invoice_plans] + [payment_audit(plan) for plan in all_payment_plans],
        )

    _tally(result, invoice_plans, all_payment_plans)
    result.synthetic_payments = len(synthetics)
    result.allocations = len(allocations)
    result.credits = len(planned_credits)
    result.deviations = len(deviations)
    result.statuses_changed = sum(len(ids) for ids in by_new_status.values())
    return result


# --------------------------------------------------------------------------------------------
# Migrate on first write (called by the payment services inside their transaction)


def _require_transaction(using: str) -> None:
    if not connections[using].in_atomic_block:
        raise RuntimeError(BACKFILL_NEEDS_TRANSACTION)


def invoice_migrate_if_needed(*, invoice_id: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Lock the invoice and, if the backfill has not reached it, migrate it (with its legacy
    payments of its tenant) now, by the batch rules. True if it migrated."""
    _require_transaction(using)
    result = _invoices_migrate(
        _Models(global_apps), using=using, invoice_ids=[invoice_id], run_id=None, today=timezone.localdate()
    )
    return bool(result.migrated_invoices)


def payment_migrate_if_needed(*, payment_id: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Lock the legacy payment and, if not mapped yet, migrate it now (first its invoice, when that
    is an unmigrated invoice of its own tenant). True if it migrated."""
    _require_transaction(using)
    result = _detached_payments_migrate(
        _Models(global_apps), using=using, payment_ids=[payment_id], run_id=None, today=timezone.localdate()
    )
    return payment_id in result.migrated_payment_ids


# --------------------------------------------------------------------------------------------
# A whole run


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


def orphaned_allocations_count(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS, tenant_id: str | None = None) -> int:
    """Allocations whose invoice or payment/credit is missing, or sits in another tenant or currency."""
    return _orphaned_allocations(_Models(apps), using=using, tenant_id=tenant_id)


def _orphaned_allocations(m: _Models, *, using: str, tenant_id: str | None) -> int:
    allocations = m.Allocation.objects.using(using)
    if tenant_id is not None:
        allocations = allocations.filter(tenant_id=tenant_id)
    invoice_ok = Exists(
        m.Invoice.objects.filter(pk=OuterRef("invoice_id"), tenant_id=OuterRef("tenant_id"))
    )
    payment_ok = Exists(
        m.Payment.objects.filter(
            pk=OuterRef("payment_id"), tenant_id=OuterRef("tenant_id"), currency=OuterRef("invoice__currency")
        )
    )
    credit_ok = Exists(
        m.Credit.objects.filter(
            pk=OuterRef("credit_id"), tenant_id=OuterRef("tenant_id"), currency=OuterRef("invoice__currency")
        )
    )
    return allocations.exclude(invoice_ok & (payment_ok | credit_ok)).count()


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
    m = _Models(apps)
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


def _unfinished_run(m: _Models, *, using: str, tenant_id: str | None, shard: Shard | None):
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
            _hook("batch-start", batch_number)
            result = migrate(ids, batch_number)
            setattr(run, cursor_field, ids[-1])
            run.counts = _merged(run.counts, result.counts())
            run.save(using=using, update_fields=[cursor_field, "counts"])
            _hook("batch-end", batch_number)
        if console is not None:
            console.batch_committed(rows=len(ids), seconds=time.monotonic() - started)
        if after_commit is not None:
            after_commit(result)
        done += len(ids)
        progress.batch_done(phase=phase, batch_number=batch_number, done=done, total=total)
        batch_number += 1


def _run(m: _Models, *, using: str, tenant_id: str | None, batch_size: int, today: date,
         progress: BackfillProgress, shard: Shard | None, console: "BackfillConsole | None") -> BackfillSummary:
    invoices = _scoped(m.Invoice.objects.using(using), tenant_id)
    total_invoices = invoices.count()
    run = _unfinished_run(m, using=using, tenant_id=tenant_id, shard=shard)
    resumed = run is not None
    if run is None:
        pending_invoices = _shard_invoices(_scoped(m.unmigrated_invoices(using), tenant_id), shard).exists()
        pending_payments = _shard_payments(_scoped(m.legacy_payments(using), tenant_id), shard).exists()
        if not pending_invoices and not pending_payments:
            progress.started(total_invoices=total_invoices, to_migrate=0)
            return BackfillSummary(
                total_invoices=total_invoices,
                counts=BatchResult().counts(),
                orphaned_allocations=_orphaned_allocations(m, using=using, tenant_id=tenant_id),
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


def _passes_run(m: _Models, run, *, using: str, tenant_id: str | None, batch_size: int, today: date,
                progress: BackfillProgress, shard: Shard | None, total_invoices: int, resumed: bool,
                console: "BackfillConsole | None" = None) -> BackfillSummary:
    """Pass 1 (invoices) and pass 2 (detached payments) of a created or resumed run, then complete it."""
    todo_invoices = _shard_invoices(
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
        migrate=lambda ids, number: _invoices_migrate(
            m, using=using, invoice_ids=ids, run_id=run.pk, today=today, batch_number=number
        ),
        using=using, batch_size=batch_size, progress=progress, first_batch=1, after_commit=invoices_migrated,
        console=console,
    )
    todo_payments = _shard_payments(
        _scoped(m.legacy_payments(using), tenant_id).filter(pk__lte=run.upper_payment_id), shard
    )
    _batches_run(
        run, todo_payments, cursor_field="cursor_payment_id", phase="payments",
        total=todo_payments.filter(pk__gt=run.cursor_payment_id).count(),
        migrate=lambda ids, number: _detached_payments_migrate(
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
        orphaned_allocations=_orphaned_allocations(m, using=using, tenant_id=tenant_id),
        run_id=run.pk,
        resumed=resumed,
        dry_run=False,
    )


# --------------------------------------------------------------------------------------------
# Reverse (the data migration's backwards step)


def _synthetic_payments(m: _Models, using: str):
    return m.Payment.objects.using(using).filter(
        channel=plan_rules.SYNTHETIC_CHANNEL, idempotency_key__startswith=plan_rules.SYNTHETIC_KEY_PREFIX
    )


def backfill_reverse(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Remove exactly what the backfill created and restore each invoice's legacy status.

    Refuses (`BackfillError(REVERSE_REFUSED)`), changing nothing, when money rows recorded since
    reference rows the backfill created. One transaction.
    """
    m = _Models(apps)
    with backfill_lock(using=using), transaction.atomic(using=using):
        connection = connections[using]
        synthetic = _synthetic_payments(m, using)
        backfilled_credits = m.Credit.objects.using(using).filter(backfilled=True)
        backfilled_allocations = m.Allocation.objects.using(using).filter(backfilled=True)
        blockers = {
            "allocations of backfill payments or credits": m.Allocation.objects.using(using)
            .filter(backfilled=False)
            .filter(Q(payment_id__in=synthetic.values("pk")) | Q(credit_id__in=backfilled_credits.values("pk"))),
            "reversals of backfill allocations": m.AllocationReversal.objects.using(using).filter(
                allocation_id__in=backfilled_allocations.values("pk")
            ),
            "refunds of backfill payments or credits": m.Refund.objects.using(using).filter(
                Q(payment_id__in=synthetic.values("pk")) | Q(credit_id__in=backfilled_credits.values("pk"))
            ),
            "credits from backfill payments": m.Credit.objects.using(using)
            .filter(backfilled=False)
            .filter(source_payment_id__in=synthetic.values("pk")),
        }
        found = [f"{queryset.count()} {what}" for what, queryset in blockers.items() if queryset.exists()]
        if found:
            raise BackfillError(REVERSE_REFUSED.format(detail=", ".join(found)))
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # The append-only audit trigger lets rows go only with this set, in this transaction.
                cursor.execute("SET LOCAL pay10.audit_purge = 'on'")
        m.PaymentAuditLog.objects.using(using).filter(
            backfilled=True, event_type__in=["INVOICE_BACKFILLED", "PAYMENT_BACKFILLED"]
        ).delete()
        m.BackfillDeviation.objects.using(using).all().delete()
        backfilled_allocations.delete()
        backfilled_credits.delete()
        m.PaymentMigration.objects.using(using).filter(payment_id__in=synthetic.values("pk")).delete()
        synthetic.delete()
        legacy = m.InvoiceMigration.objects.using(using).filter(invoice_id=OuterRef("pk"))
        m.Invoice.objects.using(using).filter(
            pk__in=m.InvoiceMigration.objects.using(using).filter(legacy_updated_at__isnull=False).values("invoice_id")
        ).update(updated_at=Subquery(legacy.values("legacy_updated_at")))
        m.Invoice.objects.using(using).filter(pk__in=m.InvoiceMigration.objects.using(using).values("invoice_id")).update(
            status=Subquery(legacy.values("legacy_status"))
        )
        m.Payment.objects.using(using).filter(
            pk__in=m.PaymentMigration.objects.using(using).values("payment_id")
        ).update(channel=None, verification_status=None)
        m.PaymentMigration.objects.using(using).all().delete()
        m.InvoiceMigration.objects.using(using).all().delete()
        m.BackfillRun.objects.using(using).all().delete()


def backfill_deviations_report() -> list[dict]:
    """Every deviation recorded so far (all runs, all tenants), one machine-readable record each (`--report`)."""
    deviations = _Models(global_apps).BackfillDeviation.objects.order_by("pk")
    fields = ("kind", "tenant_id", "invoice_number", "invoice_id", "payment_id", "legacy", "new", "detail")
    return [
        {
            "kind": row["kind"],
            "tenant": row["tenant_id"],
            "invoiceNumber": row["invoice_number"],
            "invoiceId": row["invoice_id"],
            "paymentId": row["payment_id"],
            "legacy": row["legacy"],
            "new": row["new"],
            "detail": row["detail"],
        }
        for row in deviations.values(*fields).iterator(chunk_size=5000)
    ]
