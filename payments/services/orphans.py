"""The runbook's troubleshooting cleanup of orphaned allocations (invariant 4), audited.

An orphan is an allocation whose invoice, payment or credit is missing (possible only where a raw
SQL write went around the PROTECT foreign keys: SQLite with foreign keys off, a partial restore),
or an active allocation that crosses tenant or currency.

What happens to each, in one transaction under the usual lock order:
- its invoice/payment/credit is gone: the row is DELETED (with its reversal record, if any). It
  cannot be kept: it violates a foreign key, so `PRAGMA foreign_key_check`, `VALIDATE CONSTRAINT`
  and restoring a dump of the database would all fail on it, and the money it names has no
  counterpart to return to;
- it crosses tenant or currency: it is REVERSED (an `AllocationReversal`), the normal way money
  leaves an invoice: allocations are history, and its money returns to its payment or credit.
Either way an `ORPHAN_REMOVED` audit row keeps the full row in `before`, and the statuses of the
affected invoices that still exist are recomputed.
"""
import json
from dataclasses import dataclass, field

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from billing.models import Invoice
from payments.models import Allocation, AllocationReversal, AuditEvent, Credit, Payment, PaymentAuditLog
from payments.selectors.verification import orphaned_allocations
from payments.services.audit import audit_log_entry
from payments.services.invoice_status import invoice_statuses_refresh

ORPHAN_REVERSAL_REASON = "orphan cleanup: {reason}"
DELETED = "deleted"
REVERSED = "reversed"


@dataclass(frozen=True)
class OrphanCleanup:
    orphans: list[dict] = field(default_factory=list)
    deleted: int = 0
    reversed: int = 0
    statuses_changed: int = 0


def orphan_action(orphan: dict) -> str:
    """DELETED when the row points at something that no longer exists, else REVERSED."""
    return DELETED if orphan["invoice_missing"] or orphan["payment_missing"] or orphan["credit_missing"] else REVERSED


def _as_json(value) -> dict:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _lock(model, ids: set) -> None:
    list(model.objects.select_for_update().filter(pk__in=sorted(ids)).order_by("pk").values_list("pk", flat=True))


def orphans_cleanup(*, actor=None, dry_run: bool = False) -> OrphanCleanup:
    """Find orphaned allocations; unless `dry_run`, delete or reverse each (see the module docstring)."""
    with transaction.atomic():
        orphans = orphaned_allocations()
        if dry_run or not orphans:
            return OrphanCleanup(orphans=orphans)
        _lock(Invoice, {orphan["invoice_id"] for orphan in orphans if not orphan["invoice_missing"]})
        _lock(Payment, {orphan["payment_id"] for orphan in orphans if orphan["payment_id"] and not orphan["payment_missing"]})
        _lock(Credit, {orphan["credit_id"] for orphan in orphans if orphan["credit_id"] and not orphan["credit_missing"]})
        ids = [orphan["id"] for orphan in orphans]
        rows = {row["id"]: row for row in Allocation.objects.filter(pk__in=ids).values()}
        reversals = {row["allocation_id"]: row for row in AllocationReversal.objects.filter(allocation_id__in=ids).values()}

        to_delete, to_reverse, entries = [], [], []
        for orphan in orphans:
            action = orphan_action(orphan)
            (to_delete if action == DELETED else to_reverse).append(orphan["id"])
            before = {"allocation": rows[orphan["id"]], "reversal": reversals.get(orphan["id"])}
            entries.append(
                audit_log_entry(
                    tenant_id=orphan["tenant_id"],
                    actor=actor,
                    event_type=AuditEvent.ORPHAN_REMOVED,
                    invoice_id=orphan["invoice_id"],
                    payment_id=orphan["payment_id"],
                    allocation_id=orphan["id"],
                    credit_id=orphan["credit_id"],
                    amount_cents=orphan["amount_cents"],
                    before=_as_json(before),
                    after={"action": action},
                    extra={"reason": orphan["reason"]},
                )
            )
        AllocationReversal.objects.bulk_create(
            AllocationReversal(
                allocation_id=orphan["id"],
                reason=ORPHAN_REVERSAL_REASON.format(reason=orphan["reason"]),
                created_by=actor if actor is not None and actor.is_authenticated else None,
            )
            for orphan in orphans
            if orphan_action(orphan) == REVERSED
        )
        AllocationReversal.objects.filter(allocation_id__in=to_delete).delete()
        Allocation.objects.filter(pk__in=to_delete).delete()
        PaymentAuditLog.objects.bulk_create(entries)
        changed = invoice_statuses_refresh(
            invoice_ids={orphan["invoice_id"] for orphan in orphans if not orphan["invoice_missing"]}
        )
    return OrphanCleanup(orphans=orphans, deleted=len(to_delete), reversed=len(to_reverse), statuses_changed=len(changed))
