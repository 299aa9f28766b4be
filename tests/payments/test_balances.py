import pytest

from payments.domain.money import CreditBalance, InvoiceBalance, PaymentBalance
from payments.models import AllocationReversal, Refund, VerificationStatus
from payments.selectors.schema import pay10_schema_installed
from payments.selectors.balances import (
    credit_balance,
    credits_with_balances,
    invoice_balance,
    invoices_with_balances,
    payment_balance,
    payments_with_balances,
    tenant_credit_balance,
)
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = [pytest.mark.pay10_balance, pytest.mark.django_db]


def test_invoice_balance_counts_verified_and_credit_as_paid_and_pending_apart():
    invoice = MigratedInvoiceFactory(amount_cents=10_000)
    AllocationFactory(invoice=invoice, amount_cents=3_000)
    pending = PaymentFactory(tenant=invoice.tenant, verification_status=VerificationStatus.PENDING, amount_cents=2_000)
    AllocationFactory(invoice=invoice, payment=pending, amount_cents=2_000)
    rejected = PaymentFactory(tenant=invoice.tenant, verification_status=VerificationStatus.REJECTED, amount_cents=900)
    AllocationFactory(invoice=invoice, payment=rejected, amount_cents=900)
    credit = CreditFactory(tenant=invoice.tenant, amount_cents=500)
    AllocationFactory(invoice=invoice, payment=None, credit=credit, amount_cents=500)

    balance = invoice_balance(invoice=invoice)
    assert balance == InvoiceBalance(amount_cents=10_000, paid_cents=3_500, pending_cents=2_000)
    assert balance.balance_cents == 4_500
    assert balance.outstanding_cents == 6_500


def test_reversed_allocation_no_longer_counts():
    allocation = AllocationFactory(amount_cents=1_000)
    AllocationReversal.objects.create(allocation=allocation, reason="mistake")
    assert invoice_balance(invoice=allocation.invoice).paid_cents == 0
    assert payment_balance(payment=allocation.payment).allocated_cents == 0


def test_unmigrated_invoice_reports_its_legacy_paid_figure():
    invoice = InvoiceFactory(status="PARTIALLY_PAID", amount_cents=10_000, amount_paid_cents=12_345)
    # Allocations do not exist for it yet; the clamp of the legacy figure applies.
    assert invoice_balance(invoice=invoice) == InvoiceBalance(amount_cents=10_000, paid_cents=10_000, pending_cents=0)
    row = invoices_with_balances().get(pk=invoice.pk)
    assert (row.is_migrated, row.status_today) == (False, "PAID")


@pytest.mark.parametrize(
    ("status", "amount_paid", "expected_paid"),
    [("PAID", 0, 10_000), ("ISSUED", 400, 400), ("OVERDUE", 9_000, 9_000), ("DRAFT", 10_000, 0), ("VOID", 10_000, 0)],
)
def test_legacy_paid_figure_in_sql_matches_the_rule(status, amount_paid, expected_paid):
    invoice = InvoiceFactory(status=status, amount_cents=10_000, amount_paid_cents=amount_paid)
    assert invoice_balance(invoice=invoice).paid_cents == expected_paid


def test_payment_balance_subtracts_allocations_credits_and_refunds():
    payment = PaymentFactory(amount_cents=10_000)
    AllocationFactory(invoice=MigratedInvoiceFactory(tenant=payment.tenant), payment=payment, amount_cents=4_000)
    credit = CreditFactory(tenant=payment.tenant, source_payment=payment, amount_cents=3_000)
    Refund.objects.create(tenant=payment.tenant, payment=payment, amount_cents=1_000)
    Refund.objects.create(tenant=payment.tenant, payment=payment, credit=credit, amount_cents=500)

    balance = payment_balance(payment=payment)
    assert balance == PaymentBalance(amount_cents=10_000, allocated_cents=4_000, credited_cents=3_000, refunded_cents=1_000)
    assert balance.unallocated_cents == 2_000
    assert credit_balance(credit=credit) == CreditBalance(amount_cents=3_000, applied_cents=0, refunded_cents=500)


def test_credit_remaining_and_tenant_credit_balance():
    tenant = TenantFactory(currency="KES")
    credit = CreditFactory(tenant=tenant, amount_cents=5_000)
    CreditFactory(tenant=tenant, amount_cents=700)
    AllocationFactory(invoice=MigratedInvoiceFactory(tenant=tenant), payment=None, credit=credit, amount_cents=1_200)
    assert credit_balance(credit=credit).remaining_cents == 3_800
    assert tenant_credit_balance(tenant=tenant) == {"KES": 4_500}


def test_lists_cost_one_query_however_long(django_assert_num_queries):
    pay10_schema_installed()  # answered once per process; not part of a list's cost
    tenant = TenantFactory()
    for _ in range(3):
        AllocationFactory(invoice=MigratedInvoiceFactory(tenant=tenant), amount_cents=100)
    with django_assert_num_queries(1):
        short = [(i.paid_cents, i.balance_cents, i.status_today) for i in invoices_with_balances(tenant=tenant)]
    for _ in range(12):
        AllocationFactory(invoice=MigratedInvoiceFactory(tenant=tenant), amount_cents=100)
        CreditFactory(tenant=tenant)
    with django_assert_num_queries(1):
        long = [(i.paid_cents, i.balance_cents, i.status_today) for i in invoices_with_balances(tenant=tenant)]
    with django_assert_num_queries(1):
        [p.unallocated_cents for p in payments_with_balances(tenant=tenant)]
    with django_assert_num_queries(1):
        [c.remaining_cents for c in credits_with_balances(tenant=tenant)]
    assert len(short) == 3 and len(long) == 15


def test_lists_are_tenant_scoped():
    mine, theirs = TenantFactory(), TenantFactory()
    InvoiceFactory(tenant=mine)
    InvoiceFactory(tenant=theirs)
    PaymentFactory(tenant=theirs)
    assert {i.tenant_id for i in invoices_with_balances(tenant=mine)} == {mine.pk}
    assert not payments_with_balances(tenant=mine).exists()
