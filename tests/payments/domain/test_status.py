from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.domain import status as engine
from payments.domain.status import invoice_status, legacy_paid_cents

pytestmark = pytest.mark.pay10_status

TODAY = date(2026, 11, 26)
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)


@pytest.mark.parametrize(
    ("current", "amount", "paid", "due", "expected"),
    [
        # explicit states stay whatever the money says
        ("DRAFT", 1000, 0, None, "DRAFT"),
        ("DRAFT", 1000, 1000, YESTERDAY, "DRAFT"),
        ("VOID", 1000, 0, YESTERDAY, "VOID"),
        ("VOID", 1000, 1000, None, "VOID"),
        # fully paid wins over a past due date
        ("ISSUED", 1000, 1000, YESTERDAY, "PAID"),
        ("OVERDUE", 1000, 1000, YESTERDAY, "PAID"),
        ("PARTIALLY_PAID", 1000, 1200, TOMORROW, "PAID"),
        # a zero-amount issued invoice is paid
        ("ISSUED", 0, 0, None, "PAID"),
        ("ISSUED", 0, 0, YESTERDAY, "PAID"),
        # overdue: due strictly before today and not fully paid
        ("ISSUED", 1000, 0, YESTERDAY, "OVERDUE"),
        ("PARTIALLY_PAID", 1000, 999, YESTERDAY, "OVERDUE"),
        ("PAID", 1000, 500, YESTERDAY, "OVERDUE"),
        # due today is not overdue yet
        ("ISSUED", 1000, 0, TODAY, "ISSUED"),
        ("ISSUED", 1000, 1, TODAY, "PARTIALLY_PAID"),
        # partially paid, not due
        ("ISSUED", 1000, 1, TOMORROW, "PARTIALLY_PAID"),
        ("PAID", 1000, 999, None, "PARTIALLY_PAID"),
        # nothing paid, not due or no due date
        ("PARTIALLY_PAID", 1000, 0, TOMORROW, "ISSUED"),
        ("OVERDUE", 1000, 0, None, "ISSUED"),
        ("PAID", 1000, 0, TOMORROW, "ISSUED"),
    ],
)
def test_invoice_status_case_table(current, amount, paid, due, expected):
    assert invoice_status(current_status=current, amount_cents=amount, paid_cents=paid, due_date=due, today=TODAY) == expected


def test_invoice_status_rejects_unknown_status():
    with pytest.raises(ValueError, match="unknown invoice status"):
        invoice_status(current_status="SETTLED", amount_cents=1, paid_cents=0, due_date=None, today=TODAY)


@pytest.mark.parametrize(
    ("status", "amount", "amount_paid", "expected"),
    [
        ("PAID", 1000, 0, 1000),
        ("PAID", 1000, 5000, 1000),
        ("ISSUED", 1000, 300, 300),
        ("PARTIALLY_PAID", 1000, 1500, 1000),
        ("OVERDUE", 1000, 999, 999),
        ("DRAFT", 1000, 1000, 0),
        ("VOID", 1000, 1000, 0),
    ],
)
def test_legacy_paid_cents_follows_the_backfill_rule(status, amount, amount_paid, expected):
    assert legacy_paid_cents(status=status, amount_cents=amount, amount_paid_cents=amount_paid) == expected


statuses = st.sampled_from(engine.ALL_STATUSES)
amounts = st.integers(min_value=0, max_value=10**12)
due_dates = st.none() | st.dates(min_value=TODAY - timedelta(days=400), max_value=TODAY + timedelta(days=400))


@given(current=statuses, amount=amounts, paid=amounts, due=due_dates)
def test_invoice_status_properties(current, amount, paid, due):
    verdict = invoice_status(current_status=current, amount_cents=amount, paid_cents=paid, due_date=due, today=TODAY)
    if current in ("DRAFT", "VOID"):
        assert verdict == current
        return
    assert verdict in ("ISSUED", "PARTIALLY_PAID", "PAID", "OVERDUE")
    assert (verdict == "PAID") == (paid >= amount)
    if verdict == "OVERDUE":
        assert due is not None and due < TODAY
    if verdict == "PARTIALLY_PAID":
        assert 0 < paid < amount
    # the verdict does not depend on the cached status it replaces
    assert verdict == invoice_status(current_status="ISSUED", amount_cents=amount, paid_cents=paid, due_date=due, today=TODAY)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None)
@given(current=statuses, amount=st.integers(0, 10**9), paid_share=st.integers(0, 10**9), due=due_dates)
def test_sql_twin_agrees_with_the_engine(current, amount, paid_share, due):
    """The SQL expression used by set-based readers gives the engine's verdict on every case."""
    from django.db.models import BigIntegerField, Value

    from billing.models import Invoice
    from payments.selectors.status import invoice_status_expression
    from tests.billing.factories import InvoiceFactory

    invoice = InvoiceFactory(status=current, amount_cents=amount, due_date=due)
    verdict = (
        Invoice.objects.filter(pk=invoice.pk)
        .annotate(v=invoice_status_expression(paid=Value(paid_share, output_field=BigIntegerField()), today=TODAY))
        .values_list("v", flat=True)
        .get()
    )
    assert verdict == invoice_status(current_status=current, amount_cents=amount, paid_cents=paid_share, due_date=due, today=TODAY)
    invoice.delete()
