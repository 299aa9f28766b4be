"""credit_issue, credit_apply, invoice_create, invoice_void."""
import pytest

from billing.models import InvoiceStatus
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    Credit,
    InvoiceMigration,
    PaymentAuditLog,
    VerificationStatus,
)
from payments.selectors.balances import credits_with_balances, invoices_with_balances, payments_with_balances
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create
from payments.services.credits import credit_apply, credit_issue
from payments.services.invoices import ERROR_INVOICE_NUMBER_TAKEN, invoice_create, invoice_void
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_credit_issue_takes_unallocated_money_of_a_verified_payment(tenant, staff):
    payment = PaymentFactory(tenant=tenant, amount_cents=2_000)

    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_500, actor=staff, reason="prepayment")

    assert (credit.tenant_id, credit.currency, credit.amount_cents, credit.reason) == (tenant.pk, "KES", 1_500, "prepayment")
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 500
    log = PaymentAuditLog.objects.get(event_type=AuditEvent.CREDIT_ISSUED)
    assert log.credit_id == credit.pk and log.after["credit"]["remaining_cents"] == 1_500


def test_credit_issue_refuses_pending_money(tenant, staff):
    payment = PaymentFactory(tenant=tenant, verification_status=VerificationStatus.PENDING)

    with pytest.raises(errors.RuleViolation) as raised:
        credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_PAYMENT_NOT_VERIFIED.format(id=payment.pk, status="PENDING")


def test_credit_issue_refuses_more_than_is_unallocated(tenant, staff):
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)

    with pytest.raises(errors.RuleViolation) as raised:
        credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_001, actor=staff)

    assert str(raised.value) == errors.ERROR_PAYMENT_OVER_ALLOCATED.format(id=payment.pk, unallocated=1_000, amount=1_001)


def test_credit_apply_pays_an_invoice_and_audits(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=PaymentFactory(tenant=tenant).pk, amount_cents=1_000, actor=staff)

    allocation = credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=1_000, actor=staff)

    assert allocation.credit_id == credit.pk and allocation.payment_id is None
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    log = PaymentAuditLog.objects.get(event_type=AuditEvent.CREDIT_APPLIED)
    assert log.before["credit"]["remaining_cents"] == 1_000 and log.after["credit"]["remaining_cents"] == 0


def test_credit_apply_refuses_over_spending_the_credit(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=PaymentFactory(tenant=tenant).pk, amount_cents=1_000, actor=staff)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=600, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=401, actor=staff)

    assert str(raised.value) == errors.ERROR_CREDIT_OVER_SPENT.format(id=credit.pk, remaining=400, amount=401)


def test_credit_apply_refuses_over_applying_the_invoice(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=500)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=PaymentFactory(tenant=tenant).pk, amount_cents=1_000, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=501, actor=staff)

    assert str(raised.value) == errors.ERROR_INVOICE_OVER_APPLIED.format(id=invoice.pk, balance=500, amount=501)


def test_credit_apply_to_another_tenants_invoice_is_not_found(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=TenantFactory(id="other", currency="KES"))
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=PaymentFactory(tenant=tenant).pk, amount_cents=1_000, actor=staff)

    with pytest.raises(errors.NotFound):
        credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)
    with pytest.raises(errors.NotFound) as raised:
        credit_apply(credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff, tenant=invoice.tenant)
    assert str(raised.value) == errors.ERROR_CREDIT_NOT_FOUND.format(id=credit.pk)


def test_invoice_create_puts_the_invoice_on_the_allocation_model(tenant, staff):
    invoice = invoice_create(tenant=tenant, number="N-1", amount_cents=2_500, actor=staff)

    marker = InvoiceMigration.objects.get(invoice=invoice)
    assert (marker.legacy_status, marker.legacy_paid_cents, marker.legacy_amount_paid_cents) == ("ISSUED", 0, 0)
    assert invoice.status == InvoiceStatus.ISSUED and invoice.currency == "KES" and invoice.issued_at is not None
    assert invoices_with_balances().get(pk=invoice.pk).is_migrated


def test_invoice_create_of_zero_amount_is_paid(tenant, staff):
    assert invoice_create(tenant=tenant, number="N-0", amount_cents=0, actor=staff).status == InvoiceStatus.PAID


def test_invoice_create_refuses_a_used_number(tenant, staff):
    invoice_create(tenant=tenant, number="N-1", amount_cents=1, actor=staff)

    with pytest.raises(errors.InvalidInput) as raised:
        invoice_create(tenant=tenant, number="N-1", amount_cents=1, actor=staff)

    assert str(raised.value) == ERROR_INVOICE_NUMBER_TAKEN.format(number="N-1")


def test_void_moves_verified_money_to_credit_returns_credit_and_releases_pending(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    verified = PaymentFactory(tenant=tenant, amount_cents=3_000)
    pending = PaymentFactory(tenant=tenant, amount_cents=2_000, verification_status=VerificationStatus.PENDING)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=PaymentFactory(tenant=tenant, amount_cents=1_000).pk, amount_cents=1_000, actor=staff)
    allocation_create(tenant=ALL_TENANTS, payment_id=verified.pk, invoice_id=invoice.pk, amount_cents=3_000, actor=staff)
    allocation_create(tenant=ALL_TENANTS, payment_id=pending.pk, invoice_id=invoice.pk, amount_cents=2_000, actor=staff)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=1_000, actor=staff)

    voided = invoice_void(tenant=ALL_TENANTS, invoice_id=invoice.pk, actor=staff)

    assert voided.status == InvoiceStatus.VOID
    assert AllocationReversal.objects.count() == 3
    new_credit = Credit.objects.get(source_payment=verified)
    assert new_credit.amount_cents == 3_000
    assert credits_with_balances().get(pk=credit.pk).remaining_cents == 1_000
    balances = payments_with_balances()
    assert balances.get(pk=pending.pk).unallocated_cents == 2_000
    assert balances.get(pk=verified.pk).unallocated_cents == 0
    figures = invoices_with_balances().get(pk=invoice.pk)
    assert (figures.paid_cents, figures.pending_cents, figures.status_today) == (0, 0, InvoiceStatus.VOID)
    log = PaymentAuditLog.objects.get(event_type=AuditEvent.INVOICE_VOIDED)
    assert log.before["invoice"]["paid_cents"] == 4_000 and log.after["invoice"]["status"] == "VOID"
    assert log.extra["credit_ids"] == [new_credit.pk]


def test_void_twice_changes_nothing_the_second_time(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    invoice_void(tenant=ALL_TENANTS, invoice_id=invoice.pk, actor=staff)
    invoice_void(tenant=ALL_TENANTS, invoice_id=invoice.pk, actor=staff)

    assert PaymentAuditLog.objects.filter(event_type=AuditEvent.INVOICE_VOIDED).count() == 1
    assert not Allocation.objects.exists()


def test_void_of_another_tenants_invoice_is_not_found(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)

    with pytest.raises(errors.NotFound) as raised:
        invoice_void(invoice_id=invoice.pk, actor=staff, tenant=TenantFactory(id="other", currency="KES"))

    assert str(raised.value) == errors.ERROR_INVOICE_NOT_FOUND.format(id=invoice.pk)
