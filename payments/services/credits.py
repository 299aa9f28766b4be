"""Credits: verified money a tenant holds with us, issued from a payment and applied to invoices."""
from django.db import transaction

from billing.models import Tenant
from payments.models import Allocation, Credit, Payment, VerificationStatus
from payments.services import errors
from payments.services.audit import credit_snapshot, payment_snapshot
from payments.services.backfill.first_write import rows_migrate_if_needed
from payments.services.inputs import amount_validate
from payments.services.ledger import allocation_apply, credit_write, invoice_accepts_check
from payments.services.locking import rows_lock
from payments.services.lookups import AllTenants, credit_get, invoice_get, payment_get, tenant_id_of

CREDIT_ISSUE_DEFAULT_REASON = "unallocated money of payment {id}"


def credit_issue(
    *, payment_id: int, amount_cents: int, actor, reason: str = "", tenant: Tenant | AllTenants
) -> Credit:
    """Turn part of a verified payment's unallocated money into a credit of its tenant."""
    amount_validate(amount_cents)
    with transaction.atomic():
        payment = payment_get(payment_id=payment_id, tenant_id=tenant_id_of(tenant))
        rows_migrate_if_needed(payment_ids=[payment.pk])
        payment = rows_lock(invoice_ids=lambda: (), payment_ids=lambda: [payment.pk]).payments[payment.pk]
        if payment.verification_status != VerificationStatus.VERIFIED:
            raise errors.RuleViolation(
                errors.ERROR_PAYMENT_NOT_VERIFIED.format(id=payment.pk, status=payment.verification_status)
            )
        unallocated = payment_snapshot(payment.pk)["unallocated_cents"]
        if amount_cents > unallocated:
            raise errors.RuleViolation(
                errors.ERROR_PAYMENT_OVER_ALLOCATED.format(id=payment.pk, unallocated=unallocated, amount=amount_cents)
            )
        return credit_write(
            payment=payment,
            amount_cents=amount_cents,
            reason=reason.strip() or CREDIT_ISSUE_DEFAULT_REASON.format(id=payment.pk),
            actor=actor,
        )


def credit_rejected_check(*, credit: Credit) -> None:
    """A credit issued from a payment that was later rejected holds no money."""
    if credit.source_payment_id is None:
        return
    source_status = Payment.objects.filter(pk=credit.source_payment_id).values_list("verification_status", flat=True)
    if source_status.first() == VerificationStatus.REJECTED:
        raise errors.RuleViolation(
            errors.ERROR_CREDIT_OF_REJECTED_PAYMENT.format(id=credit.pk, payment=credit.source_payment_id)
        )


def credit_apply(*, credit_id: int, invoice_id: int, amount_cents: int, actor, tenant: Tenant | AllTenants) -> Allocation:
    """Apply part or all of what is left of a credit to an invoice of its tenant and currency."""
    amount_validate(amount_cents)
    with transaction.atomic():
        credit = credit_get(credit_id=credit_id, tenant_id=tenant_id_of(tenant))
        invoice = invoice_get(invoice_id=invoice_id, tenant_id=credit.tenant_id)
        rows_migrate_if_needed(invoice_ids=[invoice.pk])
        locked = rows_lock(invoice_ids=lambda: [invoice.pk], credit_ids=lambda: [credit.pk])
        invoice, credit = locked.invoices[invoice.pk], locked.credits[credit.pk]
        credit_rejected_check(credit=credit)
        remaining = credit_snapshot(credit.pk)["remaining_cents"]
        if amount_cents > remaining:
            raise errors.RuleViolation(
                errors.ERROR_CREDIT_OVER_SPENT.format(id=credit.pk, remaining=remaining, amount=amount_cents)
            )
        invoice_accepts_check(invoice=invoice, currency=credit.currency, amount_cents=amount_cents)
        return allocation_apply(invoice=invoice, credit=credit, amount_cents=amount_cents, actor=actor)
