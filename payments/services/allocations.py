"""Applying money to invoices and taking it back: allocate a payment, auto-allocate, reverse.

Every public function is one transaction: rows locked in the fixed order (`payments.services.locking`),
balances re-read under the lock, the rule checked, the write, stored invoice statuses refreshed,
the audit row written with the figures before and after.
"""
from django.db import transaction
from django.db.models import F

from billing.models import Invoice, InvoiceStatus, Tenant
from payments.models import Allocation, AllocationReversal, AuditEvent, Credit, Payment, VerificationStatus
from payments.selectors.balances import invoices_with_balances
from payments.services import errors
from payments.services.audit import audit_record
from payments.services.invoice_status import invoice_statuses_refresh
from payments.services.locking import (
    allocation_get,
    amount_validate,
    credit_figures,
    invoice_figures,
    invoice_get,
    payment_figures,
    payment_get,
    rows_lock,
    rows_migrate_if_needed,
    tenant_id_of,
    user_or_none,
)

UNPAYABLE_STATUSES = (InvoiceStatus.DRAFT, InvoiceStatus.VOID)
AUTO_ALLOCATE_CREDIT_REASON = "unallocated remainder of payment {id} after auto-allocation"


def _figures(*, invoice_id: int, payment_id: int | None, credit_id: int | None) -> dict:
    figures = {"invoice": invoice_figures(invoice_id)}
    if payment_id is not None:
        figures["payment"] = payment_figures(payment_id)
    if credit_id is not None:
        figures["credit"] = credit_figures(credit_id)
    return figures


def invoice_accepts_check(*, invoice: Invoice, currency: str, amount_cents: int) -> None:
    """Refuse money for a DRAFT or VOID invoice, in another currency, or beyond its balance.

    Call with the invoice locked; the balance counts pending money against it.
    """
    if invoice.status in UNPAYABLE_STATUSES:
        raise errors.RuleViolation(errors.ERROR_INVOICE_NOT_PAYABLE.format(id=invoice.pk, status=invoice.status))
    if invoice.currency != currency:
        raise errors.RuleViolation(errors.ERROR_CURRENCY_MISMATCH.format(source=currency, invoice=invoice.currency))
    balance = invoice_figures(invoice.pk)["balance_cents"]
    if amount_cents > balance:
        raise errors.RuleViolation(
            errors.ERROR_INVOICE_OVER_APPLIED.format(id=invoice.pk, balance=balance, amount=amount_cents)
        )


def allocation_apply(
    *, invoice: Invoice, payment: Payment | None = None, credit: Credit | None = None, amount_cents: int, actor,
    extra: dict | None = None,
) -> Allocation:
    """Write one allocation whose rules the caller has checked with every row involved locked."""
    payment_id = payment.pk if payment is not None else None
    credit_id = credit.pk if credit is not None else None
    before = _figures(invoice_id=invoice.pk, payment_id=payment_id, credit_id=credit_id)
    allocation = Allocation.objects.create(
        tenant_id=invoice.tenant_id,
        invoice=invoice,
        payment=payment,
        credit=credit,
        amount_cents=amount_cents,
        created_by=user_or_none(actor),
    )
    invoice_statuses_refresh(invoice_ids=[invoice.pk])
    audit_record(
        tenant_id=invoice.tenant_id,
        actor=actor,
        event_type=AuditEvent.CREDIT_APPLIED if credit is not None else AuditEvent.ALLOCATION_CREATED,
        invoice_id=invoice.pk,
        payment_id=payment_id,
        allocation_id=allocation.pk,
        credit_id=credit_id,
        amount_cents=amount_cents,
        before=before,
        after=_figures(invoice_id=invoice.pk, payment_id=payment_id, credit_id=credit_id),
        extra=extra,
    )
    return allocation


def allocation_reverse_locked(*, allocation: Allocation, actor, reason: str, extra: dict | None = None) -> AllocationReversal:
    """Record that an active allocation no longer applies; its invoice, payment or credit is locked."""
    ids = {"invoice_id": allocation.invoice_id, "payment_id": allocation.payment_id, "credit_id": allocation.credit_id}
    before = _figures(**ids)
    reversal = AllocationReversal.objects.create(allocation=allocation, reason=reason, created_by=user_or_none(actor))
    invoice_statuses_refresh(invoice_ids=[allocation.invoice_id])
    audit_record(
        tenant_id=allocation.tenant_id,
        actor=actor,
        event_type=AuditEvent.ALLOCATION_REVERSED,
        allocation_id=allocation.pk,
        amount_cents=allocation.amount_cents,
        before=before,
        after=_figures(**ids),
        extra={"reason": reason, **(extra or {})},
        **ids,
    )
    return reversal


def allocation_create(*, payment_id: int, invoice_id: int, amount_cents: int, actor, tenant: Tenant | None = None) -> Allocation:
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
        unallocated = payment_figures(payment.pk)["unallocated_cents"]
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


def payment_auto_allocate(*, payment_id: int, actor, tenant: Tenant | None = None) -> list[Allocation]:
    """Allocate the payment's unallocated money to its tenant's open invoices, oldest due first;
    what is left becomes a credit once the payment is verified (a pending payment keeps it)."""
    from payments.services.credits import credit_write

    with transaction.atomic():
        payment = payment_get(payment_id=payment_id, tenant_id=tenant_id_of(tenant))
        rows_migrate_if_needed(payment_ids=[payment.pk])
        payment.refresh_from_db()
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk))
        unallocated = payment_figures(payment.pk)["unallocated_cents"]
        if unallocated <= 0:
            return []
        candidates = _auto_allocate_candidates(payment=payment, unallocated_cents=unallocated)
        rows_migrate_if_needed(invoice_ids=candidates)
        locked = rows_lock(invoice_ids=lambda: candidates, payment_ids=lambda: [payment.pk])
        payment = locked.payments[payment.pk]
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk))
        remaining = payment_figures(payment.pk)["unallocated_cents"]
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


def allocation_reverse(*, allocation_id: int, actor, reason: str, tenant: Tenant | None = None) -> AllocationReversal:
    """Take an allocation back: its money returns to its payment or credit; the row stays."""
    if not isinstance(reason, str) or not reason.strip():
        raise errors.InvalidInput(errors.ERROR_REASON_REQUIRED)
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
        return allocation_reverse_locked(allocation=allocation, actor=actor, reason=reason.strip())
