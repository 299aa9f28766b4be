"""allocation_create, payment_auto_allocate, allocation_reverse."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import InvoiceStatus
from payments.models import Allocation, AllocationReversal, AuditEvent, Credit, PaymentAuditLog, VerificationStatus
from payments.selectors.balances import invoices_with_balances, payments_with_balances
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create, allocation_reverse, payment_auto_allocate
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_allocate_applies_money_recomputes_status_and_audits_before_and_after(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=4_000)

    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=4_000, actor=staff)

    assert allocation.amount_cents == 4_000 and allocation.tenant_id == tenant.pk
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PARTIALLY_PAID
    log = PaymentAuditLog.objects.get(allocation_id=allocation.pk)
    assert log.event_type == AuditEvent.ALLOCATION_CREATED
    assert log.actor == staff
    assert log.before["invoice"]["balance_cents"] == 10_000
    assert log.after["invoice"]["balance_cents"] == 6_000
    assert log.before["payment"]["unallocated_cents"] == 4_000
    assert log.after["payment"]["unallocated_cents"] == 0


def test_allocate_rejects_over_allocation_of_the_payment(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=4_000)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=3_000, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=1_001, actor=staff)

    assert str(raised.value) == errors.ERROR_PAYMENT_OVER_ALLOCATED.format(id=payment.pk, unallocated=1_000, amount=1_001)
    assert Allocation.objects.count() == 1


def test_allocate_rejects_over_applying_the_invoice_counting_pending_money(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000)
    pending = PaymentFactory(tenant=tenant, amount_cents=3_000, verification_status=VerificationStatus.PENDING)
    verified = PaymentFactory(tenant=tenant, amount_cents=3_000)
    allocation_create(tenant=ALL_TENANTS, payment_id=pending.pk, invoice_id=invoice.pk, amount_cents=3_000, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=verified.pk, invoice_id=invoice.pk, amount_cents=2_001, actor=staff)

    assert str(raised.value) == errors.ERROR_INVOICE_OVER_APPLIED.format(id=invoice.pk, balance=2_000, amount=2_001)


@pytest.mark.parametrize("status", [InvoiceStatus.DRAFT, InvoiceStatus.VOID])
def test_allocate_refuses_draft_and_void_invoices(tenant, staff, status):
    invoice = MigratedInvoiceFactory(tenant=tenant, status=status)
    payment = PaymentFactory(tenant=tenant)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_INVOICE_NOT_PAYABLE.format(id=invoice.pk, status=status)


def test_allocate_refuses_a_rejected_payment(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment = PaymentFactory(tenant=tenant, verification_status=VerificationStatus.REJECTED)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_PAYMENT_REJECTED.format(id=payment.pk)


def test_allocate_refuses_another_currency(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, currency="USD")
    payment = PaymentFactory(tenant=tenant)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_CURRENCY_MISMATCH.format(source="KES", invoice="USD")


def test_allocate_to_another_tenants_invoice_is_not_found(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=TenantFactory(id="other", currency="KES"))
    payment = PaymentFactory(tenant=tenant)

    with pytest.raises(errors.NotFound) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_INVOICE_NOT_FOUND.format(id=invoice.pk)
    assert not Allocation.objects.exists()


def test_allocate_within_a_tenant_scope_hides_other_tenants_payments(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    foreign_payment = PaymentFactory(tenant=TenantFactory(id="other", currency="KES"))

    with pytest.raises(errors.NotFound):
        allocation_create(
            payment_id=foreign_payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff, tenant=tenant
        )


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", None])
def test_allocate_refuses_malformed_amounts(tenant, staff, amount):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment = PaymentFactory(tenant=tenant)

    with pytest.raises(errors.InvalidInput):
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=amount, actor=staff)


def test_auto_allocate_pays_oldest_due_first_and_credits_the_rest(tenant, staff):
    today = timezone.localdate()
    later = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000, due_date=today + timedelta(days=20))
    sooner = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000, due_date=today + timedelta(days=5))
    no_due = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000, due_date=None)
    MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000, status=InvoiceStatus.DRAFT)
    payment = PaymentFactory(tenant=tenant, amount_cents=10_000)

    allocations = payment_auto_allocate(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    assert [(a.invoice_id, a.amount_cents) for a in allocations] == [
        (sooner.pk, 3_000),
        (later.pk, 3_000),
        (no_due.pk, 3_000),
    ]
    credit = Credit.objects.get()
    assert (credit.source_payment_id, credit.amount_cents) == (payment.pk, 1_000)
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 0
    assert PaymentAuditLog.objects.filter(event_type=AuditEvent.CREDIT_ISSUED).count() == 1


def test_auto_allocate_ties_break_on_issue_date_then_id(tenant, staff):
    due = timezone.localdate() + timedelta(days=5)
    now = timezone.now()
    issued_later = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000, due_date=due, issued_at=now)
    issued_earlier = MigratedInvoiceFactory(
        tenant=tenant, amount_cents=1_000, due_date=due, issued_at=now - timedelta(days=3)
    )
    payment = PaymentFactory(tenant=tenant, amount_cents=1_500)

    allocations = payment_auto_allocate(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    assert [(a.invoice_id, a.amount_cents) for a in allocations] == [(issued_earlier.pk, 1_000), (issued_later.pk, 500)]


def test_auto_allocate_of_a_pending_payment_keeps_its_leftover_unallocated(tenant, staff):
    MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=4_000, verification_status=VerificationStatus.PENDING)

    allocations = payment_auto_allocate(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    assert len(allocations) == 1
    assert not Credit.objects.exists()
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 3_000


def test_auto_allocate_with_nothing_unallocated_changes_nothing(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=1_000, actor=staff)
    logs = PaymentAuditLog.objects.count()

    assert payment_auto_allocate(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff) == []
    assert PaymentAuditLog.objects.count() == logs


def test_reverse_returns_money_to_the_payment_and_keeps_the_row(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)
    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=5_000, actor=staff)

    reversal = allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation.pk, actor=staff, reason="wrong invoice")

    assert reversal.allocation_id == allocation.pk and reversal.reason == "wrong invoice"
    assert Allocation.objects.filter(pk=allocation.pk).exists()
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 5_000
    assert invoices_with_balances().get(pk=invoice.pk).status == InvoiceStatus.ISSUED
    log = PaymentAuditLog.objects.get(event_type=AuditEvent.ALLOCATION_REVERSED)
    assert log.before["invoice"]["paid_cents"] == 5_000 and log.after["invoice"]["paid_cents"] == 0


def test_reverse_twice_changes_nothing_the_second_time(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment = PaymentFactory(tenant=tenant)
    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)
    first = allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation.pk, actor=staff, reason="wrong invoice")

    again = allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation.pk, actor=staff, reason="again")

    assert again.pk == first.pk and again.reason == "wrong invoice"
    assert AllocationReversal.objects.count() == 1
    assert PaymentAuditLog.objects.filter(event_type=AuditEvent.ALLOCATION_REVERSED).count() == 1


def test_reverse_requires_a_reason(tenant, staff):
    with pytest.raises(errors.InvalidInput) as raised:
        allocation_reverse(tenant=ALL_TENANTS, allocation_id=1, actor=staff, reason="")

    assert str(raised.value) == errors.ERROR_REASON_REQUIRED


def test_reverse_of_another_tenants_allocation_is_not_found(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment = PaymentFactory(tenant=tenant)
    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)

    with pytest.raises(errors.NotFound) as raised:
        allocation_reverse(
            allocation_id=allocation.pk, actor=staff, reason="x", tenant=TenantFactory(id="other", currency="KES")
        )

    assert str(raised.value) == errors.ERROR_ALLOCATION_NOT_FOUND.format(id=allocation.pk)
