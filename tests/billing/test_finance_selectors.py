from datetime import date, timedelta

import pytest
from django.utils import timezone

from billing.selectors.finance import AGING_BUCKETS, Period, finance_summary, invoice_page, period_range
from payments.models import AllocationReversal, VerificationStatus
from payments.selectors.figures import figures_ready
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import (
    AllocationFactory,
    CreditFactory,
    LegacyPaymentFactory,
    MigratedInvoiceFactory,
    PaymentFactory,
)

TODAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    ("period", "first", "last"),
    [
        (Period.ALL_TIME, None, None),
        (Period.THIS_MONTH, date(2026, 11, 1), TODAY),
        (Period.LAST_MONTH, date(2026, 10, 1), date(2026, 10, 31)),
        (Period.THIS_QUARTER, date(2026, 10, 1), TODAY),
        (Period.THIS_YEAR, date(2026, 1, 1), TODAY),
        (Period.LAST_30_DAYS, date(2026, 10, 28), TODAY),
    ],
)
def test_period_range(period, first, last):
    date_range = period_range(period=period, today=TODAY)
    assert (date_range.first, date_range.last) == (first, last)


def test_last_month_in_january_is_december():
    date_range = period_range(period=Period.LAST_MONTH, today=date(2027, 1, 15))
    assert (date_range.first, date_range.last) == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.fixture
def tenant(db):
    return TenantFactory(id="rcme-dev", currency="USD")


def _legacy_book(tenant):
    """A legacy tenant: figures read from the invoices' own paid columns."""
    InvoiceFactory(tenant=tenant, status="PAID", amount_cents=10_000, amount_paid_cents=0, due_date=TODAY - timedelta(days=5))
    InvoiceFactory(tenant=tenant, status="PARTIALLY_PAID", amount_cents=10_000, amount_paid_cents=4_000, due_date=TODAY - timedelta(days=45))
    InvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=7_000, amount_paid_cents=0, due_date=TODAY + timedelta(days=10))
    InvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=3_000, amount_paid_cents=0, due_date=TODAY - timedelta(days=100))
    InvoiceFactory(tenant=tenant, status="DRAFT", amount_cents=99_000)
    InvoiceFactory(tenant=tenant, status="VOID", amount_cents=55_000, amount_paid_cents=55_000)
    LegacyPaymentFactory(tenant=tenant, status="PENDING", amount_cents=1_500)


@pytest.mark.fin01
def test_finance_summary_reads_legacy_figures_of_unmigrated_invoices(tenant):
    _legacy_book(tenant)
    usd = finance_summary(tenant=tenant, period=Period.ALL_TIME, today=TODAY)["currencies"]["USD"]
    assert usd["invoicedCents"] == 30_000
    assert usd["collectedCents"] == 14_000
    assert usd["outstandingCents"] == 16_000
    assert usd["overdueCents"] == 6_000 + 3_000
    assert usd["pendingVerificationCents"] == 1_500
    assert usd["aging"] == {"current": 7_000, "1-30": 0, "31-60": 6_000, "61-90": 0, "90+": 3_000}
    assert sum(usd["aging"].values()) == usd["outstandingCents"]
    assert usd["byStatus"]["PAID"] == {"count": 1, "amountCents": 10_000}
    assert usd["byStatus"]["OVERDUE"] == {"count": 2, "amountCents": 13_000}
    assert usd["byStatus"]["DRAFT"] == {"count": 1, "amountCents": 99_000}
    assert usd["byStatus"]["VOID"] == {"count": 1, "amountCents": 55_000}


@pytest.mark.fin01
def test_finance_summary_counts_only_verified_money_of_migrated_invoices(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, due_date=TODAY + timedelta(days=3))
    AllocationFactory(invoice=invoice, amount_cents=2_500)
    pending = PaymentFactory(tenant=tenant, amount_cents=4_000, verification_status=VerificationStatus.PENDING)
    AllocationFactory(invoice=invoice, payment=pending, amount_cents=4_000)
    reversed_allocation = AllocationFactory(invoice=invoice, amount_cents=1_000)
    AllocationReversal.objects.create(allocation=reversed_allocation, reason="test")
    credit = CreditFactory(tenant=tenant, amount_cents=3_000)
    AllocationFactory(invoice=invoice, payment=None, credit=credit, amount_cents=1_000)

    usd = finance_summary(tenant=tenant, period=Period.ALL_TIME, today=TODAY)["currencies"]["USD"]
    assert usd["collectedCents"] == 3_500
    assert usd["outstandingCents"] == 6_500
    assert usd["pendingVerificationCents"] == 4_000
    assert usd["unappliedCreditCents"] == 2_000
    assert usd["byStatus"]["PARTIALLY_PAID"] == {"count": 1, "amountCents": 10_000}


@pytest.mark.fin01
def test_finance_summary_never_adds_two_currencies(db):
    usd_tenant = TenantFactory(currency="USD")
    kes_tenant = TenantFactory(currency="KES")
    InvoiceFactory(tenant=usd_tenant, amount_cents=100)
    InvoiceFactory(tenant=kes_tenant, amount_cents=900)
    currencies = finance_summary(tenant=None, period=Period.ALL_TIME, today=TODAY)["currencies"]
    assert currencies["USD"]["invoicedCents"] == 100
    assert currencies["KES"]["invoicedCents"] == 900


@pytest.mark.fin01
def test_finance_summary_period_follows_issue_date(tenant):
    now = timezone.now()
    InvoiceFactory(tenant=tenant, amount_cents=100, issued_at=now)
    InvoiceFactory(tenant=tenant, amount_cents=200, issued_at=now - timedelta(days=400))
    InvoiceFactory(tenant=tenant, amount_cents=400, issued_at=None)  # falls back to created_at (now)
    summary = finance_summary(tenant=tenant, period=Period.LAST_30_DAYS)
    assert summary["currencies"]["USD"]["invoicedCents"] == 500


@pytest.mark.fin02
def test_invoice_page_is_newest_first_with_todays_status(tenant):
    older = InvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=1_000, due_date=TODAY - timedelta(days=1))
    newer = MigratedInvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=1_000, due_date=TODAY + timedelta(days=1))
    AllocationFactory(invoice=newer, amount_cents=400)
    other_tenant_invoice = InvoiceFactory(amount_cents=5)

    page = invoice_page(tenant=tenant, page=1, page_size=50, today=TODAY)
    assert page["count"] == 2
    assert [row["number"] for row in page["results"]] == [newer.number, older.number]
    newest, oldest = page["results"]
    assert (newest["status"], newest["paidCents"], newest["balanceCents"]) == ("PARTIALLY_PAID", 400, 600)
    assert (oldest["status"], oldest["paidCents"], oldest["balanceCents"]) == ("OVERDUE", 0, 1_000)
    assert other_tenant_invoice.number not in {row["number"] for row in page["results"]}


@pytest.mark.fin02
def test_invoice_page_filters_by_todays_status_and_pages(tenant):
    for _ in range(5):
        InvoiceFactory(tenant=tenant, due_date=TODAY - timedelta(days=2))
    InvoiceFactory(tenant=tenant, due_date=TODAY + timedelta(days=2))
    overdue = invoice_page(tenant=tenant, page=2, page_size=2, status="OVERDUE", today=TODAY)
    assert overdue["count"] == 5
    assert len(overdue["results"]) == 2
    assert invoice_page(tenant=tenant, page=9, page_size=2, today=TODAY)["results"] == []


@pytest.mark.fin02
@pytest.mark.parametrize(("page", "page_size"), [(0, 50), (1, 0), (1, 201)])
def test_invoice_page_refuses_out_of_range_paging(tenant, page, page_size):
    with pytest.raises(ValueError):
        invoice_page(tenant=tenant, page=page, page_size=page_size)


def test_aging_buckets_are_the_five_of_the_spec():
    assert AGING_BUCKETS == ("current", "1-30", "31-60", "61-90", "90+")


def _reference_summary(tenant) -> dict:
    """FIN-01 ALL_TIME figures added up in Python from the per-row shape of the invoice figures."""
    from payments.selectors.balances import invoices_with_balances

    by_status: dict[str, dict] = {}
    collected = outstanding = 0
    for row in invoices_with_balances(tenant=tenant).values("status_today", "amount_cents", "paid_cents"):
        figures = by_status.setdefault(row["status_today"], {"count": 0, "amountCents": 0})
        figures["count"] += 1
        figures["amountCents"] += row["amount_cents"]
        if row["status_today"] not in ("DRAFT", "VOID"):
            collected += row["paid_cents"]
            outstanding += row["amount_cents"] - row["paid_cents"]
    return {"byStatus": by_status, "collectedCents": collected, "outstandingCents": outstanding}


@pytest.mark.fin01
def test_finance_summary_adds_up_exactly_the_per_invoice_figures(tenant):
    from tests.payments.ledgers import mixed_book

    mixed_book(tenant)
    mixed_book(TenantFactory(currency="USD"))
    usd = finance_summary(tenant=tenant, period=Period.ALL_TIME)["currencies"]["USD"]
    expected = _reference_summary(tenant)
    assert {status: figures for status, figures in usd["byStatus"].items() if figures["count"]} == expected["byStatus"]
    assert usd["collectedCents"] == expected["collectedCents"]
    assert usd["outstandingCents"] == expected["outstandingCents"]
    assert sum(usd["aging"].values()) == usd["outstandingCents"]


@pytest.mark.fin01
def test_finance_summary_of_all_tenants_is_the_sum_of_each_tenant(tenant):
    from tests.payments.ledgers import mixed_book

    other = TenantFactory(currency="USD")
    mixed_book(tenant)
    mixed_book(other)
    each = [finance_summary(tenant=one, period=Period.ALL_TIME)["currencies"]["USD"] for one in (tenant, other)]
    both = finance_summary(tenant=None, period=Period.ALL_TIME)["currencies"]["USD"]
    for name in ("invoicedCents", "collectedCents", "outstandingCents", "overdueCents", "pendingVerificationCents"):
        assert both[name] == each[0][name] + each[1][name]
    assert both["aging"] == {bucket: each[0]["aging"][bucket] + each[1]["aging"][bucket] for bucket in AGING_BUCKETS}


@pytest.mark.fin02
@pytest.mark.parametrize("status", ["PAID", "PARTIALLY_PAID", "ISSUED", "OVERDUE", "DRAFT", "VOID"])
def test_invoice_page_status_filter_is_todays_verdict_of_every_invoice(tenant, status):
    from payments.selectors.balances import invoices_with_balances
    from tests.payments.ledgers import mixed_book

    mixed_book(tenant)
    mixed_book(TenantFactory(currency="USD"))
    expected = [
        row["id"]
        for row in invoices_with_balances(tenant=tenant).order_by("-id").values("id", "status_today")
        if row["status_today"] == status
    ]
    page = invoice_page(tenant=tenant, page=1, page_size=200, status=status)
    assert [row["id"] for row in page["results"]] == expected
    assert page["count"] == len(expected) > 0
    assert {row["status"] for row in page["results"]} == {status}


@pytest.mark.fin02
def test_invoice_page_rows_carry_the_same_figures_as_the_per_row_shape(tenant):
    from payments.selectors.balances import invoices_with_balances
    from tests.payments.ledgers import mixed_book

    mixed_book(tenant)
    expected = {
        row["id"]: (row["status_today"], row["paid_cents"], row["pending_cents"], row["balance_cents"])
        for row in invoices_with_balances(tenant=tenant).values(
            "id", "status_today", "paid_cents", "pending_cents", "balance_cents"
        )
    }
    for status in (None, "OVERDUE"):
        for number in (1, 2, 3):
            page = invoice_page(tenant=tenant, page=number, page_size=5, status=status)
            for row in page["results"]:
                figures = (row["status"], row["paidCents"], row["pendingCents"], row["balanceCents"])
                assert figures == expected[row["id"]]


@pytest.mark.fin02
@pytest.mark.parametrize("status", [None, "OVERDUE"])
def test_invoice_page_count_is_exact_on_full_last_and_past_the_end_pages(tenant, status):
    for _ in range(5):
        InvoiceFactory(tenant=tenant, due_date=TODAY - timedelta(days=2))
    InvoiceFactory(due_date=TODAY - timedelta(days=2))  # another tenant's
    pages = [
        invoice_page(tenant=tenant, page=number, page_size=2, status=status, today=TODAY) for number in (1, 2, 3, 4)
    ]
    assert [page["count"] for page in pages] == [5, 5, 5, 5]
    assert [len(page["results"]) for page in pages] == [2, 2, 1, 0]
    ids = [row["id"] for page in pages for row in page["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5


@pytest.mark.fin02
def test_invoice_page_costs_the_same_few_queries_on_any_page(tenant, django_assert_num_queries):
    from payments.selectors.schema import pay10_schema_installed

    pay10_schema_installed()  # answered once per process
    figures = figures_ready()  # the table check is answered once per process too
    # With the read model: is a build running, bring this transaction's upkeep forward, the count
    # from the rollup, the block holding the page's first row (or, with a status, the page's ids)
    # and the page's rows.
    for _ in range(7):
        InvoiceFactory(tenant=tenant, due_date=TODAY - timedelta(days=2))
    for number in (1, 3, 4):  # newest end, oldest end (paged from that end), last short page
        with django_assert_num_queries(5 if figures else 2):  # live: the count on the index, then the page's rows
            assert invoice_page(tenant=tenant, page=number, page_size=2, today=TODAY)["count"] == 7
    for number in (1, 4):  # live, a status filter counts in the same pass as the page
        with django_assert_num_queries(5 if figures else 1):
            assert invoice_page(tenant=tenant, page=number, page_size=2, status="OVERDUE", today=TODAY)["count"] == 7
    # past the end: live, there is no row to carry the count; from the rollup, no id and no row to read
    with django_assert_num_queries(3 if figures else 2):
        assert invoice_page(tenant=tenant, page=5, page_size=2, status="OVERDUE", today=TODAY)["count"] == 7


@pytest.mark.fin02
@pytest.mark.parametrize("invoices", [6, 7])
def test_invoice_page_from_either_end_lists_every_invoice_once_newest_first(tenant, invoices):
    created = [InvoiceFactory(tenant=tenant).pk for _ in range(invoices)]
    InvoiceFactory()  # another tenant's, between none of them but in the same table
    pages = [invoice_page(tenant=tenant, page=number, page_size=2) for number in range(1, 6)]
    assert [row["id"] for page in pages for row in page["results"]] == sorted(created, reverse=True)
    assert [len(page["results"]) for page in pages] == [2, 2, 2, invoices - 6, 0]


def test_invoices_have_the_tenant_page_index(db):
    """FIN-02 pages a tenant's ids on (tenant_id, id) (billing 0003, reversed with payments 0002)."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "billing_invoice")
    assert constraints["billing_invoice_tenant_page"]["columns"] == ["tenant_id", "id"]
    assert constraints["billing_invoice_tenant_page"]["index"] is True
