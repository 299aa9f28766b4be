"""FIN-02 over HTTP: GET /api/billing/invoices/tenant (runbook: test:fin02)."""
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from billing.api.access import ERROR_NO_TENANT, ERROR_OTHER_TENANT
from billing.api.serializers import FIN02_MAX_PAGE
from billing.api.views import ERROR_STAFF_TENANT_REQUIRED
from billing.selectors.finance import invoice_page
from tests.billing.api_clients import bearer_client
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.fin02

URL = "/api/billing/invoices/tenant"


@pytest.fixture
def tenant(db):
    return TenantFactory(id="rcme-dev", currency="USD")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(id="kilimo", currency="KES")


@pytest.fixture
def tenant_client(tenant):
    return bearer_client(username="rcme-api", tenant=tenant)


def test_invoice_list_without_a_token_is_401(tenant):
    assert APIClient().get(URL).status_code == 401


def test_tenant_token_reads_its_own_invoices_newest_first(tenant, other_tenant, tenant_client):
    older = MigratedInvoiceFactory(tenant=tenant, number="INV-1", amount_cents=10_000)
    newer = MigratedInvoiceFactory(tenant=tenant, number="INV-2", amount_cents=8_000)
    AllocationFactory(invoice=older, amount_cents=2_500)
    AllocationFactory(
        invoice=newer,
        amount_cents=1_000,
        payment=PaymentFactory(tenant=tenant, amount_cents=1_000, verification_status="PENDING"),
    )
    InvoiceFactory(tenant=other_tenant, number="INV-1")

    response = tenant_client.get(URL, {"page": 1, "pageSize": 50})

    assert response.status_code == 200
    document = response.json()
    assert document == invoice_page(tenant=tenant, page=1, page_size=50)
    assert (document["count"], document["page"], document["pageSize"]) == (2, 1, 50)
    first, second = document["results"]
    assert first["number"] == "INV-2"
    assert (first["paidCents"], first["pendingCents"], first["balanceCents"]) == (0, 1_000, 7_000)
    assert (second["paidCents"], second["balanceCents"], second["status"]) == (2_500, 7_500, "PARTIALLY_PAID")
    assert set(first) >= {
        "number", "status", "amountCents", "paidCents", "pendingCents", "balanceCents", "currency", "issuedAt", "dueDate"
    }


def test_a_not_yet_migrated_invoice_shows_its_legacy_paid_figure(tenant, tenant_client):
    InvoiceFactory(tenant=tenant, status="PARTIALLY_PAID", amount_cents=10_000, amount_paid_cents=3_000)
    (row,) = tenant_client.get(URL).json()["results"]
    assert (row["paidCents"], row["balanceCents"], row["status"]) == (3_000, 7_000, "PARTIALLY_PAID")


def test_status_is_todays_verdict_not_the_stale_stored_one(tenant, tenant_client):
    MigratedInvoiceFactory(tenant=tenant, status="ISSUED", due_date=timezone.localdate() - timedelta(days=1))
    MigratedInvoiceFactory(tenant=tenant, status="ISSUED")

    overdue = tenant_client.get(URL, {"status": "OVERDUE"}).json()

    assert overdue["count"] == 1
    assert [row["status"] for row in overdue["results"]] == ["OVERDUE"]
    assert tenant_client.get(URL, {"status": "ISSUED"}).json()["count"] == 1


def test_a_page_past_the_end_is_empty_with_the_count(tenant, tenant_client):
    InvoiceFactory.create_batch(3, tenant=tenant)
    document = tenant_client.get(URL, {"page": 3, "pageSize": 2}).json()
    assert (document["count"], document["page"], document["pageSize"], document["results"]) == (3, 3, 2, [])


def test_the_highest_allowed_page_is_empty_not_an_error(tenant, tenant_client):
    InvoiceFactory(tenant=tenant)
    response = tenant_client.get(URL, {"page": FIN02_MAX_PAGE, "pageSize": 200})
    assert response.status_code == 200
    assert (response.json()["count"], response.json()["results"]) == (1, [])


def test_pages_split_the_list_without_overlap(tenant, tenant_client):
    invoices = InvoiceFactory.create_batch(5, tenant=tenant)
    pages = [tenant_client.get(URL, {"page": page, "pageSize": 2}).json()["results"] for page in (1, 2, 3)]
    numbers = [row["number"] for page in pages for row in page]
    assert numbers == [invoice.number for invoice in reversed(invoices)]


def test_a_tenant_token_naming_another_tenant_is_403(tenant, other_tenant, tenant_client):
    response = tenant_client.get(URL, {"tenant": other_tenant.pk})
    assert response.status_code == 403
    assert response.json()["detail"] == ERROR_OTHER_TENANT


def test_a_user_acting_for_no_tenant_is_403(tenant):
    response = bearer_client(username="nobody").get(URL)
    assert response.status_code == 403
    assert response.json()["detail"] == ERROR_NO_TENANT


def test_staff_read_the_tenant_they_name(tenant, other_tenant):
    InvoiceFactory(tenant=other_tenant, number="K-1")
    staff = bearer_client(username="finance-staff", staff=True)
    document = staff.get(URL, {"tenant": other_tenant.pk}).json()
    assert [row["number"] for row in document["results"]] == ["K-1"]


def test_staff_without_a_tenant_get_400(tenant):
    response = bearer_client(username="finance-staff", staff=True).get(URL)
    assert response.status_code == 400
    assert response.json() == {"tenant": [ERROR_STAFF_TENANT_REQUIRED]}


def test_a_staff_token_bound_to_a_tenant_is_limited_to_it(tenant, other_tenant):
    """A staff user bound to a tenant (made before create_api_token refused --staff --tenant) reads
    that tenant without naming it, and no other."""
    InvoiceFactory(tenant=tenant, number="R-1")
    InvoiceFactory(tenant=other_tenant, number="K-1")
    staff = bearer_client(username="runbook", staff=True, tenant=tenant)
    assert [row["number"] for row in staff.get(URL).json()["results"]] == ["R-1"]
    assert staff.get(URL, {"tenant": other_tenant.pk}).status_code == 403


def test_unknown_tenant_is_404_for_staff(tenant):
    response = bearer_client(username="finance-staff", staff=True).get(URL, {"tenant": "no-such-tenant"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"page": 10**20}, "page"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 201}, "pageSize"),
        ({"pageSize": "1.5"}, "pageSize"),
        ({"status": "SETTLED"}, "status"),
        ({"status": "overdue"}, "status"),
    ],
)
def test_bad_parameters_are_400_with_a_message_under_their_name(tenant, tenant_client, params, field):
    response = tenant_client.get(URL, params)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_page_size_of_200_is_allowed(tenant, tenant_client):
    InvoiceFactory(tenant=tenant)
    assert tenant_client.get(URL, {"pageSize": 200}).json()["pageSize"] == 200


def test_invoice_list_answers_a_trailing_slash_too(tenant, tenant_client):
    InvoiceFactory(tenant=tenant)
    assert tenant_client.get(URL + "/").json() == tenant_client.get(URL).json()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["page", "pageSize", "status", "tenant"]),
        st.one_of(
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            st.sampled_from(["PAID", "rcme-dev", "kilimo", ""]),
            st.text(max_size=12),
        ),
    )
)
def test_no_query_string_makes_the_invoice_list_fail_with_500(tenant, other_tenant, tenant_client, params):
    response = tenant_client.get(URL, params)
    assert response.status_code in (200, 400, 403, 404)
