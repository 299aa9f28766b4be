"""Invoices after PAY-10: create one on the allocation model, void one.

Stored statuses are the status engine's cache, refreshed through `invoice_statuses_refresh`; the
explicit transitions (a new invoice's DRAFT or ISSUED, VOID) are the actions written here.
"""
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, Tenant
from payments.domain.amounts import MAX_AMOUNT_CENTS, is_cents
from payments.models import Allocation, AuditEvent, InvoiceMigration, VerificationStatus
from payments.services import errors
from payments.services.audit import audited
from payments.services.backfill.first_write import rows_migrate_if_needed
from payments.services.invoice_status import invoice_statuses_refresh, invoice_statuses_store
from payments.services.ledger import allocation_reverse_locked, credit_write
from payments.services.locking import rows_lock
from payments.services.lookups import AllTenants, invoice_get, tenant_id_of

ERROR_INVOICE_NUMBER_TAKEN = "invoice number {number!r} is already used by this tenant"
ERROR_INVOICE_AMOUNT = "an invoice amount is an integer number of cents from 0 to {max}"
ERROR_INVOICE_STATUS = "a new invoice is DRAFT or ISSUED"
VOID_REVERSE_REASON = "invoice {number} voided"
VOID_CREDIT_REASON = "money applied to invoice {number}, which was voided"


def invoice_create(
    *,
    tenant: Tenant,
    number: str,
    amount_cents: int,
    actor,
    currency: str | None = None,
    status: str = InvoiceStatus.ISSUED,
    due_date: date | None = None,
    issued_at: datetime | None = None,
) -> Invoice:
    """A new invoice, on the allocation model from the start (its `InvoiceMigration` marker says so)."""
    if not is_cents(amount_cents) or not 0 <= amount_cents <= MAX_AMOUNT_CENTS:
        raise errors.InvalidInput(ERROR_INVOICE_AMOUNT.format(max=MAX_AMOUNT_CENTS))
    currency = currency or tenant.currency
    if currency != tenant.currency:
        raise errors.InvalidInput(errors.ERROR_CURRENCY_MISMATCH_TENANT.format(currency=currency, expected=tenant.currency))
    if status not in (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED):
        raise errors.InvalidInput(ERROR_INVOICE_STATUS)
    with transaction.atomic():
        if Invoice.objects.filter(tenant=tenant, number=number).exists():
            raise errors.InvalidInput(ERROR_INVOICE_NUMBER_TAKEN.format(number=number))
        now = timezone.now()
        invoice = Invoice.objects.create(
            tenant=tenant,
            number=number,
            amount_cents=amount_cents,
            currency=currency,
            status=status,
            issued_at=issued_at or (now if status == InvoiceStatus.ISSUED else None),
            due_date=due_date,
            created_at=now,
            updated_at=now,
        )
        InvoiceMigration.objects.create(
            invoice=invoice, legacy_status=status, legacy_amount_paid_cents=0, legacy_paid_cents=0
        )
        invoice_statuses_refresh(invoice_ids=[invoice.pk])
        invoice.refresh_from_db()
        return invoice


def invoice_void(*, invoice_id: int, actor, tenant: Tenant | AllTenants) -> Invoice:
    """VOID an invoice: verified money applied to it becomes credit of its payment, credit applied to
    it returns to its credit, pending allocations are released back to their payments."""
    with transaction.atomic():
        invoice = invoice_get(invoice_id=invoice_id, tenant_id=tenant_id_of(tenant))
        rows_migrate_if_needed(invoice_ids=[invoice.pk])

        def active():
            return Allocation.objects.filter(invoice_id=invoice.pk, reversal__isnull=True)

        locked = rows_lock(
            invoice_ids=lambda: [invoice.pk],
            payment_ids=lambda: active().filter(payment__isnull=False).values_list("payment_id", flat=True),
            credit_ids=lambda: active().filter(credit__isnull=False).values_list("credit_id", flat=True),
        )
        invoice = locked.invoices[invoice.pk]
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        with audited(
            tenant_id=invoice.tenant_id, actor=actor, event_type=AuditEvent.INVOICE_VOIDED, invoice_id=invoice.pk
        ) as change:
            change.amount_cents = change.before["invoice"]["paid_cents"] + change.before["invoice"]["pending_cents"]
            moved_to_credit, released = [], []
            for allocation in active().order_by("pk"):
                allocation_reverse_locked(
                    allocation=allocation, actor=actor, reason=VOID_REVERSE_REASON.format(number=invoice.number)[:255]
                )
                payment = locked.payments.get(allocation.payment_id)
                if payment is not None and payment.verification_status == VerificationStatus.VERIFIED:
                    credit = credit_write(
                        payment=payment,
                        amount_cents=allocation.amount_cents,
                        reason=VOID_CREDIT_REASON.format(number=invoice.number)[:255],
                        actor=actor,
                        extra={"voided_invoice_id": invoice.pk, "allocation_id": allocation.pk},
                    )
                    moved_to_credit.append(credit.pk)
                else:
                    released.append(allocation.pk)
            invoice_statuses_store({invoice.pk: InvoiceStatus.VOID})
            change.extra = {"credit_ids": moved_to_credit, "released_allocation_ids": released}
        invoice.refresh_from_db()
        return invoice
