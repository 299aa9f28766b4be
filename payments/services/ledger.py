"""The writes every payment operation shares, made with every row involved already locked
(`payments.services.locking`) and the rules checked by the caller: apply money to an invoice, take
an allocation back, issue a credit out of a payment. Each is audited (`audited`) and refreshes the
stored statuses it affects. The operations (`allocations`, `credits`, `payments`, `invoices`) build
on these; none of them imports another operation module.
"""
from billing.models import Invoice, InvoiceStatus
from payments.models import Allocation, AllocationReversal, AuditEvent, Credit, Payment
from payments.services import errors
from payments.services.audit import audited, invoice_snapshot, user_or_none
from payments.services.invoice_status import invoice_statuses_refresh

UNPAYABLE_STATUSES = (InvoiceStatus.DRAFT, InvoiceStatus.VOID)


def invoice_accepts_check(*, invoice: Invoice, currency: str, amount_cents: int) -> None:
    """Refuse money for a DRAFT or VOID invoice, in another currency, or beyond its balance.

    Call with the invoice locked; the balance counts pending money against it.
    """
    if invoice.status in UNPAYABLE_STATUSES:
        raise errors.RuleViolation(errors.ERROR_INVOICE_NOT_PAYABLE.format(id=invoice.pk, status=invoice.status))
    if invoice.currency != currency:
        raise errors.RuleViolation(errors.ERROR_CURRENCY_MISMATCH.format(source=currency, invoice=invoice.currency))
    balance = invoice_snapshot(invoice.pk)["balance_cents"]
    if amount_cents > balance:
        raise errors.RuleViolation(
            errors.ERROR_INVOICE_OVER_APPLIED.format(id=invoice.pk, balance=balance, amount=amount_cents)
        )


def allocation_apply(
    *, invoice: Invoice, payment: Payment | None = None, credit: Credit | None = None, amount_cents: int, actor,
    extra: dict | None = None,
) -> Allocation:
    """Write one allocation whose rules the caller has checked with every row involved locked."""
    with audited(
        tenant_id=invoice.tenant_id,
        actor=actor,
        event_type=AuditEvent.CREDIT_APPLIED if credit is not None else AuditEvent.ALLOCATION_CREATED,
        invoice_id=invoice.pk,
        payment_id=payment.pk if payment is not None else None,
        credit_id=credit.pk if credit is not None else None,
        amount_cents=amount_cents,
        extra=extra,
    ) as change:
        allocation = Allocation.objects.create(
            tenant_id=invoice.tenant_id,
            invoice=invoice,
            payment=payment,
            credit=credit,
            amount_cents=amount_cents,
            created_by=user_or_none(actor),
        )
        invoice_statuses_refresh(invoice_ids=[invoice.pk])
        change.allocation_id = allocation.pk
    return allocation


def allocation_reverse_locked(*, allocation: Allocation, actor, reason: str, extra: dict | None = None) -> AllocationReversal:
    """Record that an active allocation no longer applies; its invoice, payment or credit is locked."""
    with audited(
        tenant_id=allocation.tenant_id,
        actor=actor,
        event_type=AuditEvent.ALLOCATION_REVERSED,
        invoice_id=allocation.invoice_id,
        payment_id=allocation.payment_id,
        credit_id=allocation.credit_id,
        allocation_id=allocation.pk,
        amount_cents=allocation.amount_cents,
        extra={"reason": reason, **(extra or {})},
    ):
        reversal = AllocationReversal.objects.create(allocation=allocation, reason=reason, created_by=user_or_none(actor))
        invoice_statuses_refresh(invoice_ids=[allocation.invoice_id])
    return reversal


def credit_write(*, payment: Payment, amount_cents: int, reason: str, actor, extra: dict | None = None) -> Credit:
    """Issue a credit out of a locked, verified payment whose unallocated money the caller has checked."""
    with audited(
        tenant_id=payment.tenant_id,
        actor=actor,
        event_type=AuditEvent.CREDIT_ISSUED,
        payment_id=payment.pk,
        amount_cents=amount_cents,
        extra={"reason": reason[:255], **(extra or {})},
    ) as change:
        credit = Credit.objects.create(
            tenant_id=payment.tenant_id,
            currency=payment.currency,
            amount_cents=amount_cents,
            source_payment=payment,
            reason=reason[:255],
            created_by=user_or_none(actor),
        )
        change.credit_id = credit.pk  # snapshotted after, not before: it did not exist
    return credit
