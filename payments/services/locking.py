"""The locked-row primitives: every writer locks in the one fixed order, through `rows_lock`.

Lock order (so that concurrent operations cannot deadlock): invoices (ascending id), then payments
(ascending id), then credits (ascending id), each with `SELECT ... FOR UPDATE`. Which invoices to
lock often depends on rows read before the lock (the invoices a payment is allocated to);
`rows_lock` re-reads that set once everything is locked and, if it grew in between, rolls back to a
savepoint (which releases the locks taken) and tries again.

Around it: `payments.services.lookups` finds the rows within a tenant, the backfill's
`first_write.rows_migrate_if_needed` migrates them before a write, `payments.services.audit.audited`
snapshots, writes and audits.
"""
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction

from billing.models import Invoice
from payments.models import Credit, Payment

LOCK_ATTEMPTS = 10


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
