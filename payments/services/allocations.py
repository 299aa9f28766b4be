"""Applying money to invoices and taking it back: allocate a payment, auto-allocate, reverse.

Every public function is one transaction: rows found in the tenant (`lookups`), migrated if the
backfill has not reached them (`backfill.first_write`), locked in the fixed order (`locking`),
balances re-read under the lock, the rule checked, the write through `ledger` (audited, stored
invoice statuses refreshed).
"""
from django.db import transaction
from django.db.models import F

from billing.models import Tenant
from payments.models import Allocation, AllocationReversal, Payment, VerificationStatus
from payments.selectors.balances import invoices_with_balances
from payments.services import errors
from payments.services.audit import payment_snapshot
from payments.services.backfill.first_write import rows_migrate_if_needed
from payments.services.inputs import amount_validate, reason_required
from payments.services.ledger import (
    UNPAYABLE_STATUSES,
    allocation_apply,
    allocation_reverse_locked,
    credit_write,
    invoice_accepts_check,
)
from payments.services.locking import rows_lock
from payments.services.lookups import AllTenants, allocation_get, invoice_get, payment_get, tenant_id_of

AUTO_ALLOCATE_CREDIT_REASON = "unallocated remainder of payment {id} after auto-allocation"


def allocation_create(*, payment_id: int, invoice_id: int, amount_cents: int, actor, tenant: Tenant | AllTenants) -> Allocation:
    """Apply part or all of a payment's unallocated money to an invoice of its tenant and currency."""
    amount_validate(amount_cents)
    with transaction.atomic():
        payment = payment_get(payment_id=payment_id, tenant_id=tenant_id_of(tenant))
        invoice = invoice_get(invoice_id=invoice_id, tenant_id=payment.tenant_id)
        rows_migrate_if_needed(invoice_ids=[invoice.pk], payment_ids=[payment.pk])
        locked = rows_lock(invoice_ids=lambda: [invoice.pk], payment_ids=lambda: [payment.pk])
        invoice, payment = locked.invoices[invoice.pk], locked.payments[payment.pk]
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk))
        unallocated = payment_snapshot(payment.pk)["unallocated_cents"]
        if amount_cents > unallocated:
            raise errors.RuleViolation(
                errors.ERROR_PAYMENT_OVER_ALLOCATED.format(id=payment.pk, unallocated=unallocated, amount=amount_cents)
            )
        invoice_accepts_check(invoice=invoice, currency=payment.currency, amount_cents=amount_cents)
        return allocation_apply(invoice=invoice, payment=payment, amount_cents=amount_cents, actor=actor)


def _auto_allocate_candidates(*, payment: Payment, unallocated_cents: int) -> list[int]:
    """Open invoices of the payment's tenant and currency, oldest due date first (then oldest issue
    date, then id), as many as it takes for their balances to cover the money."""
    rows = (
        invoices_with_balances(tenant=payment.tenant)
        .filter(currency=payment.currency, balance_cents__gt=0)
        .exclude(status__in=UNPAYABLE_STATUSES)
        .order_by(F("due_date").asc(nulls_last=True), F("issued_at").asc(nulls_last=True), "pk")
        .values_list("pk", "balance_cents")
    )
    candidates, covered = [], 0
    for invoice_id, balance in rows.iterator(chunk_size=200):
        candidates.append(invoice_id)
        covered += balance
        if covered >= unallocated_cents:
            break
    return candidates


def payment_auto_allocate(*, payment_id: int, actor, tenant: Tenant | AllTenants) -> list[Allocation]:
    """Allocate the payment's unallocated money to its tenant's open invoices, oldest due first;
    what is left becomes a credit once the payment is verified (a pending payment keeps it)."""
    with transaction.atomic():
        payment = payment_get(payment_id=payment_id, tenant_id=tenant_id_of(tenant))
        rows_migrate_if_needed(payment_ids=[payment.pk])
        payment.refresh_from_db()
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk))
        unallocated = payment_snapshot(payment.pk)["unallocated_cents"]
        if unallocated <= 0:
            return []
        candidates = _auto_allocate_candidates(payment=payment, unallocated_cents=unallocated)
        rows_migrate_if_needed(invoice_ids=candidates)
        locked = rows_lock(invoice_ids=lambda: candidates, payment_ids=lambda: [payment.pk])
        payment = locked.payments[payment.pk]
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk))
        remaining = payment_snapshot(payment.pk)["unallocated_cents"]
        balances = dict(invoices_with_balances().filter(pk__in=candidates).values_list("pk", "balance_cents"))
        allocations = []
        for invoice_id in candidates:
            invoice = locked.invoices[invoice_id]
            take = min(balances[invoice_id], remaining)
            if take <= 0 or invoice.status in UNPAYABLE_STATUSES or invoice.currency != payment.currency:
                continue
            allocations.append(
                allocation_apply(
                    invoice=invoice, payment=payment, amount_cents=take, actor=actor, extra={"auto": True}
                )
            )
            remaining -= take
        if remaining > 0 and payment.verification_status == VerificationStatus.VERIFIED:
            credit_write(
                payment=payment,
                amount_cents=remaining,
                reason=AUTO_ALLOCATE_CREDIT_REASON.format(id=payment.pk),
                actor=actor,
            )
        return allocations


def allocation_reverse(*, allocation_id: int, actor, reason: str, tenant: Tenant | AllTenants) -> AllocationReversal:
    """Take an allocation back: its money returns to its payment or credit; the row stays."""
    reason = reason_required(reason)
    with transaction.atomic():
        allocation = allocation_get(allocation_id=allocation_id, tenant_id=tenant_id_of(tenant))
        rows_lock(
            invoice_ids=lambda: [allocation.invoice_id],
            payment_ids=lambda: [allocation.payment_id] if allocation.payment_id else [],
            credit_ids=lambda: [allocation.credit_id] if allocation.credit_id else [],
        )
        existing = AllocationReversal.objects.filter(allocation=allocation).first()
        if existing is not None:
            return existing
        return allocation_reverse_locked(allocation=allocation, actor=actor, reason=reason)
