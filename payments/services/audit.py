"""Audit trail writes. Callers run inside the transaction of the change they record.

Every row says where the change came from, in `extra["origin"]` (`payments.services.origin`). In
`extra`, not in columns of their own: the backfill writes audit rows while the schema is still at
0003, with the code of today.
"""
from django.db import transaction

from payments.models import PaymentAuditLog
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
