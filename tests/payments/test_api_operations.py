"""The payment operations HTTP API: every endpoint's success, 400, 401, 403, 404 and 409."""
import pytest
from rest_framework.test import APIClient

from billing.services.api_tokens import api_token_create
from payments.models import Allocation, AllocationReversal, Credit, Payment, PaymentAuditLog, Refund, VerificationStatus
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.credits import credit_issue
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

STAFF_ONLY = [
    ("post", "/api/payments/{payment}/verify", {}),
    ("post", "/api/payments/{payment}/reject", {"reason": "bounced"}),
    ("post", "/api/payments/{payment}/allocations", {"invoiceId": "{invoice}", "amountCents": 100}),
    ("post", "/api/payments/{payment}/auto-allocate", {}),
    ("post", "/api/payments/{payment}/refund", {"amountCents": 100}),
    ("post", "/api/allocations/{allocation}/reverse", {"reason": "wrong invoice"}),
    ("post", "/api/credits/{credit}/apply", {"invoiceId": "{invoice}", "amountCents": 100}),
    ("post", "/api/invoices/{invoice}/void", {}),
]
EVERY_ENDPOINT = [("post", "/api/payments", {}), ("get", "/api/payments/{payment}", None), *STAFF_ONLY]


def client_for(*, username: str, tenant_id: str | None = None, staff: bool = False) -> APIClient:
    _user, token = api_token_create(username=username, tenant_id=tenant_id, staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def staff_client():
    return client_for(username="finance", staff=True)


@pytest.fixture
def tenant_client(tenant):
    return client_for(username="acme-api", tenant_id=tenant.pk)


@pytest.fixture
def world(tenant, staff_client):
    """One of each object in the tenant: an invoice, a verified payment allocated to it, a credit."""
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)
    allocation = staff_client.post(
        f"/api/payments/{payment.pk}/allocations", {"invoiceId": invoice.pk, "amountCents": 1_000}, format="json"
    ).json()
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=None)
    return {"invoice": invoice.pk, "payment": payment.pk, "allocation": allocation["id"], "credit": credit.pk}


def fill(template, ids: dict):
    if isinstance(template, str):
        text = template.format(**ids)
        return int(text) if template.startswith("{") and text.isdigit() else text
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    return template


def call(client, method: str, path: str, body, ids: dict):
    url = fill(path, ids)
    if method == "get":
        return client.get(url)
    return client.post(url, fill(body, ids), format="json")


def money_rows() -> tuple:
    return (
        Payment.objects.count(),
        Allocation.objects.count(),
        AllocationReversal.objects.count(),
        Credit.objects.count(),
        Refund.objects.count(),
        PaymentAuditLog.objects.count(),
    )


# --- 401 / 403 / 404 on every endpoint ---------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ENDPOINT)
def test_every_endpoint_needs_a_valid_token(method, path, body):
    ids = {"invoice": 1, "payment": 1, "allocation": 1, "credit": 1}
    for authorization in (None, "Bearer not-a-token", "Token abc"):
        client = APIClient()
        if authorization:
            client.credentials(HTTP_AUTHORIZATION=authorization)
        assert call(client, method, path, body, ids).status_code == 401


def test_staff_only_endpoints_refuse_a_tenant_token(world, tenant_client):
    before = money_rows()

    for method, path, body in STAFF_ONLY:
        assert call(tenant_client, method, path, body, world).status_code == 403, path
    assert money_rows() == before


def test_unknown_and_out_of_range_ids_are_not_found(world, staff_client):
    before = money_rows()

    for method, path, body in EVERY_ENDPOINT[1:]:
        for missing in (987_654, 2**63, 10**30):
            ids = {key: missing for key in world}
            ids["invoice"] = 987_654 if "{invoice}" not in path else missing  # an id in a body must be in range
            assert call(staff_client, method, path, body, ids).status_code == 404, (path, missing)
    assert money_rows() == before


def test_a_tenant_token_does_not_see_another_tenants_payment(world, tenant):
    other_client = client_for(username="other-api", tenant_id=TenantFactory(id="other", currency="KES").pk)

    response = other_client.get(f"/api/payments/{world['payment']}")

    assert response.status_code == 404
    assert str(world["payment"]) in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/api/payments/{payment}/allocations", "/api/credits/{credit}/apply"]
)
def test_money_cannot_be_applied_to_another_tenants_invoice(world, staff_client, path):
    foreign_invoice = MigratedInvoiceFactory(tenant=TenantFactory(id="other", currency="KES"))
    before = money_rows()

    response = staff_client.post(
        fill(path, world), {"invoiceId": foreign_invoice.pk, "amountCents": 100}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["detail"] == errors.ERROR_INVOICE_NOT_FOUND.format(id=foreign_invoice.pk)
    assert money_rows() == before


# --- POST /api/payments ------------------------------------------------------------------------


def payment_body(**overrides) -> dict:
    body = {"tenant": "acme", "amountCents": 5_000, "currency": "KES", "channel": "MOBILE_MONEY", "reference": "MP-1"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def test_staff_record_a_verified_payment(tenant, staff_client):
    response = staff_client.post(
        "/api/payments",
        payment_body(verificationStatus="VERIFIED", receivedAt="2026-11-01T09:30:00Z"),
        format="json",
    )

    assert response.status_code == 201
    document = response.json()
    assert document["verificationStatus"] == "VERIFIED" and document["legacyStatus"] == "SUCCEEDED"
    assert (document["amountCents"], document["unallocatedCents"], document["allocations"]) == (5_000, 5_000, [])
    assert document["receivedAt"] == "2026-11-01T09:30:00Z"


def test_a_tenant_records_a_pending_payment_for_itself(tenant, tenant_client):
    response = tenant_client.post("/api/payments", payment_body(tenant=None), format="json")

    assert response.status_code == 201
    assert response.json()["verificationStatus"] == "PENDING"
    assert Payment.objects.get().tenant_id == "acme"


def test_a_tenant_may_not_record_verified_money_or_for_another_tenant(tenant, tenant_client):
    TenantFactory(id="other", currency="KES")

    assert tenant_client.post("/api/payments", payment_body(verificationStatus="VERIFIED"), format="json").status_code == 403
    assert tenant_client.post("/api/payments", payment_body(tenant="other"), format="json").status_code == 403
    assert not Payment.objects.exists()


def test_idempotent_replay_returns_the_same_payment_and_a_different_body_conflicts(tenant, staff_client):
    first = staff_client.post("/api/payments", payment_body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
    replay = staff_client.post("/api/payments", payment_body(), format="json", HTTP_IDEMPOTENCY_KEY="abc")
    conflict = staff_client.post(
        "/api/payments", payment_body(amountCents=5_001), format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )

    assert (first.status_code, replay.status_code, conflict.status_code) == (201, 200, 409)
    assert replay.json()["id"] == first.json()["id"]
    assert conflict.json() == {
        "detail": errors.ERROR_IDEMPOTENCY_CONFLICT.format(key="abc"),
        "code": "idempotency_conflict",
    }
    assert Payment.objects.count() == 1


MALFORMED_PAYMENT_BODIES = [
    (payment_body(amountCents=None), "amountCents"),
    (payment_body(amountCents=-1), "amountCents"),
    (payment_body(amountCents=0), "amountCents"),
    (payment_body(amountCents=10**15 + 1), "amountCents"),
    (payment_body(amountCents=10**40), "amountCents"),
    (payment_body(amountCents=12.5), "amountCents"),
    (payment_body(amountCents=12.0), "amountCents"),
    (payment_body(amountCents="1200"), "amountCents"),
    (payment_body(amountCents=True), "amountCents"),
    (payment_body(currency="USD"), "currency"),
    (payment_body(currency=None), "currency"),
    (payment_body(channel="BITCOIN"), "channel"),
    (payment_body(channel="LEGACY"), "channel"),
    (payment_body(channel=None), "channel"),
    (payment_body(receivedAt="yesterday"), "receivedAt"),
    (payment_body(reference="x" * 256), "reference"),
    (payment_body(reference=5), "reference"),
    (payment_body(tenant=None), "tenant"),
    (payment_body(verificationStatus="REJECTED"), "verificationStatus"),
]


def test_malformed_payment_bodies_are_refused_field_by_field_and_write_nothing(tenant, staff_client):
    for body, field in MALFORMED_PAYMENT_BODIES:
        response = staff_client.post("/api/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

        assert response.status_code == 400, body
        assert field in response.json(), body
    assert money_rows() == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"text"', "{"])
def test_bodies_that_are_not_json_objects_are_refused(tenant, staff_client, raw):
    response = staff_client.post("/api/payments", raw, content_type="application/json")

    assert response.status_code == 400
    assert not Payment.objects.exists()


def test_an_overlong_idempotency_key_is_refused(tenant, staff_client):
    response = staff_client.post("/api/payments", payment_body(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert response.status_code == 400
    assert not Payment.objects.exists()


# --- GET /api/payments/{id} ---------------------------------------------------------------------


def test_get_a_payment_with_its_balances_and_allocations(world, tenant_client):
    response = tenant_client.get(f"/api/payments/{world['payment']}")

    assert response.status_code == 200
    document = response.json()
    assert (document["allocatedCents"], document["creditedCents"], document["unallocatedCents"]) == (1_000, 1_000, 3_000)
    assert [(a["id"], a["invoiceId"], a["amountCents"], a["active"]) for a in document["allocations"]] == [
        (world["allocation"], world["invoice"], 1_000, True)
    ]


# --- staff operations ---------------------------------------------------------------------------


def test_verify_then_reject(tenant, staff_client):
    payment = PaymentFactory(tenant=tenant, verification_status=VerificationStatus.PENDING)

    verified = staff_client.post(f"/api/payments/{payment.pk}/verify")
    rejected = staff_client.post(f"/api/payments/{payment.pk}/reject", {"reason": "chargeback"}, format="json")
    verify_again = staff_client.post(f"/api/payments/{payment.pk}/verify")

    assert (verified.status_code, verified.json()["verificationStatus"]) == (200, "VERIFIED")
    assert (rejected.status_code, rejected.json()["verificationStatus"]) == (200, "REJECTED")
    assert verify_again.status_code == 409
    assert verify_again.json()["detail"] == errors.ERROR_VERIFY_REJECTED.format(id=payment.pk)


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": 5}, {"reason": "x" * 256}])
def test_reject_needs_a_reason(tenant, staff_client, body):
    payment = PaymentFactory(tenant=tenant)

    response = staff_client.post(f"/api/payments/{payment.pk}/reject", body, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()
    assert not PaymentAuditLog.objects.exists()


def test_allocate_and_over_allocate(world, staff_client):
    ok = staff_client.post(
        f"/api/payments/{world['payment']}/allocations", {"invoiceId": world["invoice"], "amountCents": 3_000}, format="json"
    )
    over = staff_client.post(
        f"/api/payments/{world['payment']}/allocations", {"invoiceId": world["invoice"], "amountCents": 1}, format="json"
    )

    assert ok.status_code == 201
    assert (ok.json()["invoiceId"], ok.json()["paymentId"], ok.json()["amountCents"]) == (world["invoice"], world["payment"], 3_000)
    assert over.status_code == 409
    assert over.json() == {
        "detail": errors.ERROR_PAYMENT_OVER_ALLOCATED.format(id=world["payment"], unallocated=0, amount=1),
        "code": "rule_violation",
    }


MALFORMED_ALLOCATION_BODIES = [
    {},
    {"invoiceId": "{invoice}"},
    {"invoiceId": "{invoice}", "amountCents": 0},
    {"invoiceId": "{invoice}", "amountCents": -100},
    {"invoiceId": "{invoice}", "amountCents": "100"},
    {"invoiceId": "{invoice}", "amountCents": 1.5},
    {"invoiceId": "{invoice}", "amountCents": False},
    {"invoiceId": "{invoice}", "amountCents": 10**16},
    {"invoiceId": "1", "amountCents": 100},
    {"invoiceId": 0, "amountCents": 100},
    {"invoiceId": 2**64, "amountCents": 100},
    {"invoiceId": None, "amountCents": 100},
]


@pytest.mark.parametrize("path", ["/api/payments/{payment}/allocations", "/api/credits/{credit}/apply"])
def test_malformed_allocation_bodies_are_refused_and_write_nothing(world, staff_client, path):
    before = money_rows()

    for body in MALFORMED_ALLOCATION_BODIES:
        assert staff_client.post(fill(path, world), fill(body, world), format="json").status_code == 400, body
    assert money_rows() == before


def test_allocate_to_a_void_invoice_is_a_conflict(world, staff_client, tenant):
    void = MigratedInvoiceFactory(tenant=tenant, status="VOID")

    response = staff_client.post(
        f"/api/payments/{world['payment']}/allocations", {"invoiceId": void.pk, "amountCents": 1}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["detail"] == errors.ERROR_INVOICE_NOT_PAYABLE.format(id=void.pk, status="VOID")


def test_auto_allocate(world, staff_client):
    response = staff_client.post(f"/api/payments/{world['payment']}/auto-allocate")

    assert response.status_code == 200
    document = response.json()
    assert [(a["invoiceId"], a["amountCents"]) for a in document["allocations"]] == [(world["invoice"], 3_000)]
    assert document["payment"]["unallocatedCents"] == 0


def test_refund(world, staff_client):
    response = staff_client.post(f"/api/payments/{world['payment']}/refund", {"amountCents": 3_500}, format="json")
    too_much = staff_client.post(f"/api/payments/{world['payment']}/refund", {"amountCents": 1_501}, format="json")

    assert response.status_code == 200
    assert [(r["creditId"], r["amountCents"]) for r in response.json()["refunds"]] == [(None, 3_000), (world["credit"], 500)]
    assert response.json()["payment"]["refundedCents"] == 3_000
    assert too_much.status_code == 409


def test_reverse_an_allocation(world, staff_client):
    response = staff_client.post(f"/api/allocations/{world['allocation']}/reverse", {"reason": "wrong invoice"}, format="json")

    assert response.status_code == 200
    assert (response.json()["active"], response.json()["reversalReason"]) == (False, "wrong invoice")
    assert staff_client.get(f"/api/payments/{world['payment']}").json()["allocatedCents"] == 0


def test_apply_a_credit_and_over_spend_it(world, staff_client):
    ok = staff_client.post(f"/api/credits/{world['credit']}/apply", {"invoiceId": world["invoice"], "amountCents": 600}, format="json")
    over = staff_client.post(f"/api/credits/{world['credit']}/apply", {"invoiceId": world["invoice"], "amountCents": 401}, format="json")

    assert ok.status_code == 201 and ok.json()["creditId"] == world["credit"]
    assert over.status_code == 409
    assert over.json()["detail"] == errors.ERROR_CREDIT_OVER_SPENT.format(id=world["credit"], remaining=400, amount=401)


def test_void_an_invoice(world, staff_client):
    response = staff_client.post(f"/api/invoices/{world['invoice']}/void")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["paidCents"], response.json()["balanceCents"]) == ("VOID", 0, 10_000)
    assert Credit.objects.filter(source_payment_id=world["payment"]).count() == 2


def test_paths_take_no_trailing_slash_redirect(world, staff_client):
    assert staff_client.post(f"/api/payments/{world['payment']}/verify/").status_code == 404


def test_the_openapi_schema_describes_every_operation(tenant_client):
    response = tenant_client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/payments",
        "/api/payments/{payment_id}",
        "/api/payments/{payment_id}/verify",
        "/api/payments/{payment_id}/reject",
        "/api/payments/{payment_id}/allocations",
        "/api/payments/{payment_id}/auto-allocate",
        "/api/payments/{payment_id}/refund",
        "/api/allocations/{allocation_id}/reverse",
        "/api/credits/{credit_id}/apply",
        "/api/invoices/{invoice_id}/void",
    ):
        assert path in paths
    assert paths["/api/payments"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "PaymentRecordRequest"
    )
