"""The Python path's reads (SQLite; PostgreSQL reads and plans in SQL, `sql_batch`, with the same
locks in the same order): lock the rows, in the fixed order, and read them after the lock.

`locked_invoice_batch` locks the invoices (ascending id), keeps those not migrated yet (the marker is
read after the lock), then locks their legacy payments of the same tenant (ascending id) and keeps
those still unmapped; `locked_payments` does the second half for payments named by id.
"""
from collections.abc import Iterable

from django.db.models import F

from payments.domain.backfill import LegacyInvoice, LegacyPayment
from payments.services.backfill.common import BackfillModels


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


def locked_invoice_batch(
    m: BackfillModels, using: str, ids: list[int]
) -> tuple[dict[int, LegacyInvoice], dict[int, object], list[LegacyPayment]]:
    """(invoices not migrated yet, their `updated_at`, their unmapped legacy payments of the same tenant)."""
    return _orm_locked_invoice_batch(m, using, ids)


def locked_payments(m: BackfillModels, using: str, *, payment_ids: list[int]) -> list[LegacyPayment]:
    """Lock these payments (ascending id) and return those still unmapped, read after the lock."""
    return _orm_locked_payments(m, using, payment_ids=payment_ids)
