"""Audit trail writes. Callers run inside the transaction of the change they record.

Every row says where the change came from, in `extra["origin"]`: in a request (API or admin)
`requestId` (`config.request_context`) and, through the API, `apiTokenKey`, the non-secret key knox
finds the caller's token by (set on the user by `config.api.ExpiringTokenAuthentication`); outside
a request (a management command) `osUser`, the operating system user running it. (In `extra`, not in
columns of their own: the backfill writes audit rows while the schema is still at 0003.)
"""
import getpass
from functools import cache

from django.db import transaction

from config.api import TOKEN_KEY_ATTRIBUTE
from config.request_context import current_request_id
from payments.models import PaymentAuditLog


@cache
def os_user() -> str:
    """Who runs this process, as the operating system knows it ("" if it cannot tell)."""
    try:
        return getpass.getuser()[:150]
    except (KeyError, OSError):
        return ""


def audit_origin(actor=None) -> dict:
    """Where an audit row written now, by `actor`, comes from (its `extra["origin"]`)."""
    request_id = current_request_id()
    if request_id is None:
        return {"osUser": os_user()}
    origin = {"requestId": request_id}
    token_key = getattr(actor, TOKEN_KEY_ATTRIBUTE, None)
    if token_key is not None:
        origin["apiTokenKey"] = token_key
    return origin


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
