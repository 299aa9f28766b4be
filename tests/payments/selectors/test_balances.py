import pytest

from payments.domain.money import CreditBalance, InvoiceBalance, PaymentBalance
from payments.models import AllocationReversal, Refund, VerificationStatus
from payments.selectors.schema import pay10_schema_installed
from payments.selectors.balances import (
    credit_balance,
    credits_with_balances,
    invoice_balance,
    invoices_with_balances,
    invoices_with_balances_grouped,
    payment_balance,
    payments_with_balances,
    tenant_credit_balance,
)
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.ledgers import mixed_book
from tests.payments.factories import (
    AllocationFactory,
    CreditFactory,
    LegacyPaymentFactory,
    MigratedInvoiceFactory,
    PaymentFactory,
)

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


# The set-based shape (`invoices_with_balances_grouped`) must say exactly what the per-row shape says.

GROUPED_FIELDS = (
    "is_migrated", "paid_cents", "pending_cents", "balance_cents", "outstanding_cents", "status_today",
)


def _figures(queryset) -> dict:
    return {row["id"]: row for row in queryset.values("id", *GROUPED_FIELDS)}


@pytest.mark.parametrize("scoped", [True, False])
def test_grouped_shape_gives_the_same_figures_as_the_per_row_shape(scoped):
    tenant, other = TenantFactory(), TenantFactory(currency="KES")
    mixed_book(tenant)
    mixed_book(other)
    scope = tenant if scoped else None
    grouped = _figures(invoices_with_balances_grouped(tenant=scope))
    assert grouped == _figures(invoices_with_balances(tenant=scope))
    assert len(grouped) == (14 if scoped else 28)
    # The book covers every status and both shapes of invoice, so the comparison means something.
    assert {row["status_today"] for row in grouped.values()} == {
        "PAID", "PARTIALLY_PAID", "ISSUED", "OVERDUE", "DRAFT", "VOID"
    }
    assert {row["is_migrated"] for row in grouped.values()} == {True, False}


def test_grouped_shape_does_not_repeat_sums_over_several_allocations():
    invoice = MigratedInvoiceFactory(amount_cents=10_000)
    for amount in (100, 200, 300):
        AllocationFactory(invoice=invoice, amount_cents=amount)
    pending = PaymentFactory(tenant=invoice.tenant, verification_status=VerificationStatus.PENDING, amount_cents=50)
    AllocationFactory(invoice=invoice, payment=pending, amount_cents=50)
    row = invoices_with_balances_grouped().get(pk=invoice.pk)
    assert (row.paid_cents, row.pending_cents, row.balance_cents) == (600, 50, 9_350)


def test_grouped_shape_filters_on_todays_status_in_one_query(django_assert_num_queries):
    pay10_schema_installed()
    tenant = TenantFactory()
    mixed_book(tenant)
    with django_assert_num_queries(1):
        overdue = list(
            invoices_with_balances_grouped(tenant=tenant).filter(status_today="OVERDUE").values_list("pk", flat=True)
        )
    per_row = _figures(invoices_with_balances(tenant=tenant))
    expected = [pk for pk, row in per_row.items() if row["status_today"] == "OVERDUE"]
    assert sorted(overdue) == sorted(expected) and len(expected) == 4


@pytest.mark.parametrize("scoped", [True, False])
def test_unapplied_credit_by_currency_is_the_sum_of_every_credits_remaining(scoped):
    from payments.selectors.balances import unapplied_credit_by_currency

    tenant, other = TenantFactory(currency="KES"), TenantFactory(currency="USD")
    for owner in (tenant, other):
        kept = CreditFactory(tenant=owner, amount_cents=5_000)
        AllocationFactory(invoice=MigratedInvoiceFactory(tenant=owner), payment=None, credit=kept, amount_cents=1_200)
        undone = AllocationFactory(
            invoice=MigratedInvoiceFactory(tenant=owner), payment=None, credit=kept, amount_cents=300
        )
        AllocationReversal.objects.create(allocation=undone, reason="test")
        Refund.objects.create(tenant=owner, payment=PaymentFactory(tenant=owner), credit=kept, amount_cents=400)
        source = PaymentFactory(tenant=owner, amount_cents=9_000)
        CreditFactory(tenant=owner, source_payment=source, amount_cents=700)
        rejected = PaymentFactory(tenant=owner, verification_status=VerificationStatus.REJECTED, amount_cents=9_000)
        void_credit = CreditFactory(tenant=owner, source_payment=rejected, amount_cents=2_000)
        AllocationFactory(
            invoice=MigratedInvoiceFactory(tenant=owner), payment=None, credit=void_credit, amount_cents=500
        )
        Refund.objects.create(tenant=owner, payment=rejected, credit=void_credit, amount_cents=100)
        legacy_source = LegacyPaymentFactory(tenant=owner, amount_cents=9_000)  # not mapped yet: status NULL
        CreditFactory(tenant=owner, source_payment=legacy_source, amount_cents=900)
    scope = tenant if scoped else None
    expected: dict[str, int] = {}
    for credit in credits_with_balances(tenant=scope):
        expected[credit.currency] = expected.get(credit.currency, 0) + credit.remaining_cents
    assert unapplied_credit_by_currency(tenant=scope) == expected
    assert expected["KES"] == 5_000 - 1_200 - 400 + 700 + 900
    assert set(expected) == ({"KES"} if scoped else {"KES", "USD"})
