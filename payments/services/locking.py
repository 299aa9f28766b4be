"""Shared steps of the payment operations: find rows within a tenant, migrate them on first write,
lock them in the one fixed order, and describe them for the audit trail.

Lock order, for every writer (so that concurrent operations cannot deadlock): invoices (ascending
id), then payments (ascending id), then credits (ascending id), each with `SELECT ... FOR UPDATE`.
Which invoices to lock often depends on rows read before the lock (the invoices a payment is
allocated to); `rows_lock` re-reads that set once everything is locked and, if it grew in between,
rolls back to a savepoint (which releases the locks taken) and tries again.
"""
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from billing.models import Invoice, Tenant
from payments.models import Allocation, Credit, InvoiceMigration, Payment, PaymentMigration
from payments.selectors.balances import credits_with_balances, invoices_with_balances, payments_with_balances
from payments.services import errors

MAX_AMOUNT_CENTS = 10**15
LOCK_ATTEMPTS = 10


def amount_validate(amount_cents) -> int:
    """A positive integer number of cents, no larger than `MAX_AMOUNT_CENTS`."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise errors.InvalidInput(errors.ERROR_AMOUNT_NOT_INTEGER)
    if amount_cents <= 0:
        raise errors.InvalidInput(errors.ERROR_AMOUNT_NOT_POSITIVE)
    if amount_cents > MAX_AMOUNT_CENTS:
        raise errors.InvalidInput(errors.ERROR_AMOUNT_TOO_LARGE.format(max=MAX_AMOUNT_CENTS))
    return amount_cents


def _scoped_get(model, *, pk, tenant_id: str | None, message: str):
    queryset = model.objects.all()
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    try:
        return queryset.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError, OverflowError):
        raise errors.NotFound(message.format(id=pk)) from None


def invoice_get(*, invoice_id: int, tenant_id: str | None) -> Invoice:
    return _scoped_get(Invoice, pk=invoice_id, tenant_id=tenant_id, message=errors.ERROR_INVOICE_NOT_FOUND)


def payment_get(*, payment_id: int, tenant_id: str | None) -> Payment:
    return _scoped_get(Payment, pk=payment_id, tenant_id=tenant_id, message=errors.ERROR_PAYMENT_NOT_FOUND)


def credit_get(*, credit_id: int, tenant_id: str | None) -> Credit:
    return _scoped_get(Credit, pk=credit_id, tenant_id=tenant_id, message=errors.ERROR_CREDIT_NOT_FOUND)


def allocation_get(*, allocation_id: int, tenant_id: str | None) -> Allocation:
    return _scoped_get(Allocation, pk=allocation_id, tenant_id=tenant_id, message=errors.ERROR_ALLOCATION_NOT_FOUND)


def tenant_id_of(tenant: Tenant | None) -> str | None:
    return tenant.pk if tenant is not None else None


def user_or_none(actor):
    """The user to store in a `created_by` column: only an authenticated user."""
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def rows_migrate_if_needed(*, invoice_ids: Iterable[int] = (), payment_ids: Iterable[int] = ()) -> None:
    """Put not-yet-migrated invoices and legacy payments on the allocation model before a write
    touches them (SPEC: a write to a not-yet-migrated invoice migrates it first)."""
    invoice_ids = set(invoice_ids)
    payment_ids = set(payment_ids)
    unmigrated_invoices = sorted(
        invoice_ids - set(InvoiceMigration.objects.filter(invoice_id__in=invoice_ids).values_list("invoice_id", flat=True))
    )
    unmigrated_payments = sorted(
        Payment.objects.filter(pk__in=payment_ids)
        .filter(Q(channel__isnull=True) | Q(verification_status__isnull=True))
        .exclude(pk__in=PaymentMigration.objects.filter(payment_id__in=payment_ids).values("payment_id"))
        .values_list("pk", flat=True)
    )
    if not unmigrated_invoices and not unmigrated_payments:
        return
    from payments.services.backfill import BackfillError, invoice_migrate_if_needed, payment_migrate_if_needed

    try:
        for invoice_id in unmigrated_invoices:
            invoice_migrate_if_needed(invoice_id=invoice_id)
        for payment_id in unmigrated_payments:
            payment_migrate_if_needed(payment_id=payment_id)
    except BackfillError as error:  # e.g. a client's key in the backfill's namespace: refused, nothing written
        raise errors.RuleViolation(str(error)) from None


class _LockSetGrew(Exception):
    pass


@dataclass
class LockedRows:
    invoices: dict[int, Invoice] = field(default_factory=dict)
    payments: dict[int, Payment] = field(default_factory=dict)
    credits: dict[int, Credit] = field(default_factory=dict)


def _lock(model, ids: Iterable[int]) -> dict:
    ids = sorted(set(ids))
    if not ids:
        return {}
    return {row.pk: row for row in model.objects.select_for_update().filter(pk__in=ids).order_by("pk")}


def rows_lock(
    *,
    invoice_ids: Callable[[], Iterable[int]],
    payment_ids: Callable[[], Iterable[int]] = lambda: (),
    credit_ids: Callable[[], Iterable[int]] = lambda: (),
) -> LockedRows:
    """Lock invoices, then payments, then credits (each ascending), inside the caller's transaction.

    Each callable is evaluated just before its rows are locked; `invoice_ids` once more at the end,
    and if it names an invoice not locked yet, the locks are released and taken again.
    """
    for _attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                wanted_invoices = set(invoice_ids())
                locked = LockedRows(invoices=_lock(Invoice, wanted_invoices))
                locked.payments = _lock(Payment, payment_ids())
                locked.credits = _lock(Credit, credit_ids())
                if not set(invoice_ids()) <= wanted_invoices:
                    raise _LockSetGrew
                return locked
        except _LockSetGrew:
            continue
    raise RuntimeError("the rows to lock kept changing; try again")


def invoice_figures(invoice_id: int) -> dict:
    row = (
        invoices_with_balances()
        .values("status", "amount_cents", "paid_cents", "pending_cents", "balance_cents")
        .get(pk=invoice_id)
    )
    return dict(row)


def payment_figures(payment_id: int) -> dict:
    row = (
        payments_with_balances()
        .values(
            "verification_status", "amount_cents", "allocated_cents", "credited_cents", "refunded_cents",
            "unallocated_cents",
        )
        .get(pk=payment_id)
    )
    return dict(row)


def credit_figures(credit_id: int) -> dict:
    row = credits_with_balances().values("amount_cents", "applied_cents", "refunded_cents", "remaining_cents").get(
        pk=credit_id
    )
    return dict(row)
