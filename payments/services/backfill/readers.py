"""A batch's reads: lock the rows, in the fixed order, and read them after the lock.

`locked_invoice_batch` locks the invoices (ascending id), keeps those not migrated yet (the marker is
read after the lock), then locks their legacy payments of the same tenant (ascending id) and keeps
those still unmapped; `locked_payments` does the second half for payments named by id. On
PostgreSQL raw SQL with one array parameter, rows straight into the planner's dataclasses; the ORM
elsewhere; the same rows, locks and lock order either way.
"""
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.models import F

from payments.domain.backfill import LegacyInvoice, LegacyPayment
from payments.services.backfill.common import BackfillModels, ids_literal, quote_name


PAYMENT_FIELDS = ("id", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "status", "received_at")
INVOICE_FIELDS = (
    "id", "tenant_id", "number", "currency", "status", "amount_cents", "amount_paid_cents",
    "due_date", "issued_at", "paid_at", "created_at",
)


def _tenant_currencies(m: BackfillModels, using: str, tenant_ids: Iterable[str]) -> dict[str, str]:
    return dict(m.Tenant.objects.using(using).filter(pk__in=set(tenant_ids)).values_list("pk", "currency"))


def _locked_payment_rows(m: BackfillModels, using: str, queryset) -> list[dict]:
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
    m: BackfillModels, using: str, ids: list[int]
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


def _orm_locked_payments(m: BackfillModels, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """Lock these payments (ascending id) and return those still unmapped, read after the lock."""
    payment_rows = _locked_payment_rows(m, using, m.Payment.objects.using(using).filter(pk__in=payment_ids))
    currencies = _tenant_currencies(m, using, [row["tenant_id"] for row in payment_rows])
    return [_legacy_payment(row, currencies) for row in payment_rows]


def _pg_locked_invoice_batch(
    m: BackfillModels, using: str, ids: list[int]
) -> tuple[dict[int, LegacyInvoice], dict[int, object], list[LegacyPayment]]:
    """`_orm_locked_invoice_batch` on PostgreSQL: the same rows, locks and lock order."""
    invoice_table = quote_name(m.Invoice._meta.db_table)
    migration_table = quote_name(m.InvoiceMigration._meta.db_table)
    payment_table = quote_name(m.Payment._meta.db_table)
    payment_migration_table = quote_name(m.PaymentMigration._meta.db_table)
    with _pg_cursor(using) as cursor:
        # FOR UPDATE returns each row as it is once locked (the newest committed version), so the
        # invoice's columns need no second read; whether it is migrated is read by the next
        # statement, after the lock, so an invoice migrated meanwhile by an online write is skipped.
        cursor.execute(
            "SELECT id, tenant_id, number, currency, status, amount_cents, amount_paid_cents, due_date, issued_at, "
            f"paid_at, created_at, updated_at FROM {invoice_table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            [ids_literal(ids)],
        )
        rows = cursor.fetchall()
        cursor.execute(
            f"SELECT invoice_id FROM {migration_table} WHERE invoice_id = ANY(%s::bigint[])", [ids_literal(ids)]
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
            f"JOIN {quote_name(m.Tenant._meta.db_table)} t ON t.id = p.tenant_id "
            "WHERE p.invoice_id = ANY(%s::bigint[]) AND p.tenant_id = i.tenant_id AND p.verification_status IS NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {payment_migration_table} pm WHERE pm.payment_id = p.id) "
            "ORDER BY p.id FOR UPDATE OF p",
            [ids_literal(invoices)],
        )
        rows = cursor.fetchall()
        if not rows:
            return invoices, updated_at, []
        # Read after the lock: a payment mapped meanwhile by a writer that held it before us.
        cursor.execute(
            f"SELECT payment_id FROM {payment_migration_table} WHERE payment_id = ANY(%s::bigint[])",
            [ids_literal(row[0] for row in rows)],
        )
        mapped = {row[0] for row in cursor.fetchall()}
        return invoices, updated_at, [LegacyPayment(*row) for row in rows if row[0] not in mapped]


def _pg_locked_payments(m: BackfillModels, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """`_orm_locked_payments` on PostgreSQL."""
    with _pg_cursor(using) as cursor:
        cursor.execute(
            f"SELECT id FROM {quote_name(m.Payment._meta.db_table)} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            [ids_literal(payment_ids)],
        )
        return _pg_unmapped_payments(m, cursor, [row[0] for row in cursor.fetchall()])


def _pg_unmapped_payments(m: BackfillModels, cursor, ids: list[int]) -> list[LegacyPayment]:
    """The legacy payments among `ids` the backfill has not mapped yet, ascending id (a new
    statement, so it sees what a writer that held a lock before us committed)."""
    if not ids:
        return []
    cursor.execute(
        "SELECT p.id, p.tenant_id, t.currency, p.invoice_id, i.tenant_id, p.amount_cents, p.currency, p.method, "
        "p.status, p.received_at, coalesce(i.number, '') "
        f"FROM {quote_name(m.Payment._meta.db_table)} p "
        f"JOIN {quote_name(m.Tenant._meta.db_table)} t ON t.id = p.tenant_id "
        f"LEFT JOIN {quote_name(m.Invoice._meta.db_table)} i ON i.id = p.invoice_id "
        "WHERE p.id = ANY(%s::bigint[]) AND p.verification_status IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {quote_name(m.PaymentMigration._meta.db_table)} pm WHERE pm.payment_id = p.id) "
        "ORDER BY p.id",
        [ids_literal(ids)],
    )
    return [LegacyPayment(*row) for row in cursor.fetchall()]


def locked_invoice_batch(
    m: BackfillModels, using: str, ids: list[int]
) -> tuple[dict[int, LegacyInvoice], dict[int, object], list[LegacyPayment]]:
    """(invoices not migrated yet, their `updated_at`, their unmapped legacy payments of the same tenant)."""
    reader = _pg_locked_invoice_batch if connections[using].vendor == "postgresql" else _orm_locked_invoice_batch
    return reader(m, using, ids)


def locked_payments(m: BackfillModels, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """Lock these payments (ascending id) and return those still unmapped, read after the lock."""
    reader = _pg_locked_payments if connections[using].vendor == "postgresql" else _orm_locked_payments
    return reader(m, using, payment_ids=payment_ids)
