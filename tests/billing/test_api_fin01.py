"""FIN-01 over HTTP: GET /api/billing/admin/finance/summary (runbook: test:fin-01)."""
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from billing.api.access import IsStaff
from billing.api.serializers import (
    ERROR_CUSTOM_PERIOD_NEEDS_RANGE,
    ERROR_RANGE_NEEDS_CUSTOM_PERIOD,
    ERROR_RANGE_REVERSED,
)
from billing.selectors.finance import Period, finance_summary
from tests.billing.api_clients import bearer_client
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.fin01

URL = "/api/billing/admin/finance/summary"


@pytest.fixture
def books(db):
    """Two tenants in two currencies, one migrated and one still legacy."""
    usd = TenantFactory(id="rcme-dev", currency="USD")
    kes = TenantFactory(id="kilimo", currency="KES")
    today = timezone.localdate()
    paid = MigratedInvoiceFactory(tenant=usd, amount_cents=20_000, due_date=today - timedelta(days=40))
    AllocationFactory(invoice=paid, amount_cents=5_000)
    MigratedInvoiceFactory(tenant=usd, amount_cents=7_000, due_date=today + timedelta(days=3))
    PaymentFactory(tenant=usd, amount_cents=900, verification_status="PENDING")
    CreditFactory(tenant=usd, amount_cents=1_200)
    InvoiceFactory(tenant=kes, status="PARTIALLY_PAID", amount_cents=50_000, amount_paid_cents=10_000)
    InvoiceFactory(
        tenant=kes, amount_cents=3_000, issued_at=timezone.now() - timedelta(days=400), created_at=timezone.now()
    )
    return usd, kes


@pytest.fixture
def staff_client(db):
    return bearer_client(username="finance-staff", staff=True)


def test_finance_summary_without_a_token_is_401(books):
    response = APIClient().get(URL, {"period": "ALL_TIME"})
    assert response.status_code == 401


def test_finance_summary_refuses_a_tenant_user_with_403(books):
    usd, _kes = books
    client = bearer_client(username="tenant-user", tenant=usd)
    response = client.get(URL, {"period": "ALL_TIME", "tenant": usd.pk})
    assert response.status_code == 403
    assert response.json()["detail"] == IsStaff.message


def test_finance_summary_is_the_selector_document_for_every_tenant(books, staff_client):
    response = staff_client.get(URL, {"period": "ALL_TIME"})
    assert response.status_code == 200
    document = response.json()
    assert document == finance_summary(tenant=None, period=Period.ALL_TIME)
    assert sorted(document["currencies"]) == ["KES", "USD"]
    assert document["currencies"]["USD"]["collectedCents"] == 5_000


def test_finance_summary_for_one_tenant_leaves_the_others_out(books, staff_client):
    usd, _kes = books
    document = staff_client.get(URL, {"period": "THIS_YEAR", "tenant": usd.pk}).json()
    assert document == finance_summary(tenant=usd, period=Period.THIS_YEAR)
    assert document["tenant"] == "rcme-dev"
    assert list(document["currencies"]) == ["USD"]


def test_finance_summary_defaults_to_all_time(books, staff_client):
    document = staff_client.get(URL).json()
    assert document["period"] == Period.ALL_TIME
    assert document == finance_summary(tenant=None, period=Period.ALL_TIME)


def test_from_and_to_select_a_custom_period_by_issue_date(books, staff_client):
    today = timezone.localdate()
    first = today - timedelta(days=500)
    last = today - timedelta(days=300)
    document = staff_client.get(URL, {"from": first.isoformat(), "to": last.isoformat()}).json()
    assert (document["period"], document["from"], document["to"]) == ("CUSTOM", first.isoformat(), last.isoformat())
    assert document["currencies"]["KES"]["invoicedCents"] == 3_000
    # USD issued nothing then; its credit is listed because credit figures ignore the period.
    assert document["currencies"]["USD"]["invoicedCents"] == 0
    assert document["currencies"]["USD"]["unappliedCreditCents"] == 1_200
    assert document == finance_summary(tenant=None, period=Period.CUSTOM, date_from=first, date_to=last)


def test_period_custom_with_only_from_is_open_ended(books, staff_client):
    today = timezone.localdate()
    document = staff_client.get(URL, {"period": "CUSTOM", "from": today.isoformat()}).json()
    assert (document["from"], document["to"]) == (today.isoformat(), None)
    assert "KES" in document["currencies"]


def test_finance_summary_answers_a_trailing_slash_too(books, staff_client):
    assert staff_client.get(URL + "/", {"period": "ALL_TIME"}).json() == staff_client.get(URL).json()


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"period": "FOREVER"}, "period", '"FOREVER" is not a valid choice.'),
        ({"period": "all_time"}, "period", '"all_time" is not a valid choice.'),
        ({"from": "2026-13-01"}, "from", None),
        ({"to": "yesterday"}, "to", None),
        ({"period": "THIS_MONTH", "from": "2026-01-01"}, "period", ERROR_RANGE_NEEDS_CUSTOM_PERIOD),
        ({"period": "CUSTOM"}, "period", ERROR_CUSTOM_PERIOD_NEEDS_RANGE),
        ({"from": "2026-02-01", "to": "2026-01-31"}, "from", ERROR_RANGE_REVERSED),
        ({"tenant": "x" * 65}, "tenant", None),
    ],
)
def test_bad_parameters_are_400_with_a_message_under_their_name(books, staff_client, params, field, message):
    response = staff_client.get(URL, params)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    if message is not None:
        assert body[field] == [message]


def test_unknown_tenant_is_404(books, staff_client):
    response = staff_client.get(URL, {"tenant": "no-such-tenant"})
    assert response.status_code == 404


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["period", "from", "to", "tenant"]),
        st.one_of(st.sampled_from(["ALL_TIME", "CUSTOM", "2026-01-01", "rcme-dev", ""]), st.text(max_size=12)),
    )
)
def test_no_query_string_makes_finance_summary_fail_with_500(books, staff_client, params):
    response = staff_client.get(URL, params)
    assert response.status_code in (200, 400, 404)


def test_openapi_schema_lists_both_finance_endpoints(staff_client):
    response = staff_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"period", "from", "to", "tenant"} <= {p["name"] for p in paths[URL]["get"]["parameters"]}
    assert {"page", "pageSize", "status", "tenant"} <= {
        p["name"] for p in paths["/api/billing/invoices/tenant"]["get"]["parameters"]
    }
    assert URL + "/" not in paths
