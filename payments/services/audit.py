"""Audit trail writes. Callers run inside the transaction of the change they record.

A service's change goes through `audited(...)`: snapshot the rows before, write, snapshot after,
one audit row with both (`invoice_snapshot`, `payment_snapshot`, `credit_snapshot`: the audit's
copy of a row's balances, read under the change's locks).

Every row says where the change came from, in `extra["origin"]` (`payments.services.origin`). In
`extra`, not in columns of their own: the backfill writes audit rows while the schema is still at
0003, with the code of today.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import transaction

from payments.models import PaymentAuditLog
from payments.selectors.balances import credits_with_balances, invoices_with_balances, payments_with_balances
from payments.services.origin import audit_origin, os_user  # noqa: F401 - os_user: part of this module's API


def audit_log_entry(
    *,
    tenant_id: str,
    actor=None,
    event_type: str,
    invoice_id: int | None = None,
    payment_id: int | None = None,
    allocation_id: int | None = None,
    credit_id: int | None = None,
    amount_cents: int | None = None,
    before: dict | None = None,
    after: dict | None = None,
    extra: dict | None = None,
    backfilled: bool = False,
) -> PaymentAuditLog:
    """An unsaved audit row; `audit_record` saves one, bulk writers save many at once."""
    return PaymentAuditLog(
        tenant_id=tenant_id,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_label=actor.get_username() if actor is not None and actor.is_authenticated else "system",
        event_type=event_type,
        invoice_id=invoice_id,
        payment_id=payment_id,
        allocation_id=allocation_id,
        credit_id=credit_id,
        amount_cents=amount_cents,
        before=before or {},
        after=after or {},
        extra={**(extra or {}), "origin": audit_origin(actor)},
        backfilled=backfilled,
    )


def audit_record(**fields) -> PaymentAuditLog:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit rows are written inside the transaction of the change they record")
    entry = audit_log_entry(**fields)
    entry.save()
    return entry


def user_or_none(actor):
    """The user to store in a `created_by` column: only an authenticated user."""
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def invoice_snapshot(invoice_id: int) -> dict:
    row = (
        invoices_with_balances()
        .values("status", "amount_cents", "paid_cents", "pending_cents", "balance_cents")
        .get(pk=invoice_id)
    )
    return dict(row)


def payment_snapshot(payment_id: int) -> dict:
    row = (
        payments_with_balances()
        .values(
            "verification_status", "amount_cents", "allocated_cents", "credited_cents", "refunded_cents",
            "unallocated_cents",
        )
        .get(pk=payment_id)
    )
    return dict(row)


def credit_snapshot(credit_id: int) -> dict:
    row = credits_with_balances().values("amount_cents", "applied_cents", "refunded_cents", "remaining_cents").get(
        pk=credit_id
    )
    return dict(row)


def snapshots(*, invoice_id: int | None = None, payment_id: int | None = None, credit_id: int | None = None) -> dict:
    """{"invoice": ..., "payment": ..., "credit": ...} of the rows named (an empty dict for none)."""
    taken = {}
    if invoice_id is not None:
        taken["invoice"] = invoice_snapshot(invoice_id)
    if payment_id is not None:
        taken["payment"] = payment_snapshot(payment_id)
    if credit_id is not None:
        taken["credit"] = credit_snapshot(credit_id)
    return taken


AUDITED_FIELDS = (
    "tenant_id", "actor", "event_type", "invoice_id", "payment_id", "credit_id", "allocation_id", "amount_cents", "extra",
)


@dataclass
class AuditedChange:
    """The audit row of a change being made: the `with audited(...)` block may fill in ids of rows it
    creates (a new credit is snapshotted after, not before), the amount and `extra`."""

    tenant_id: str
    actor: object
    event_type: str
    invoice_id: int | None = None
    payment_id: int | None = None
    credit_id: int | None = None
    allocation_id: int | None = None
    amount_cents: int | None = None
    extra: dict | None = None
    before: dict = field(default_factory=dict)
    entry: PaymentAuditLog | None = None

    def snapshot(self) -> dict:
        return snapshots(invoice_id=self.invoice_id, payment_id=self.payment_id, credit_id=self.credit_id)


@contextmanager
def audited(*, tenant_id: str, actor, event_type: str, **fields) -> Iterator[AuditedChange]:
    """Snapshot the rows named (`invoice_id`, `payment_id`, `credit_id`), run the block's write,
    snapshot them again and record one audit row with both; nothing is recorded if the block raises."""
    change = AuditedChange(tenant_id=tenant_id, actor=actor, event_type=event_type, **fields)
    change.before = change.snapshot()
    yield change
    change.entry = audit_record(
        **{name: getattr(change, name) for name in AUDITED_FIELDS}, before=change.before, after=change.snapshot()
    )
