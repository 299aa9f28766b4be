"""Issue 10, security hardening: each test names the way in it closes (points 1-9 of the issue)."""
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from billing.api.serializers import ERROR_DATE_OUT_OF_RANGE
from billing.models import InvoiceStatus
from billing.services.api_tokens import (
    ERROR_STAFF_USER_AS_TENANT,
    ERROR_STAFF_WITH_TENANT,
    ERROR_TOKEN_LIMIT,
    ApiTokenError,
    api_token_create,
)
from payments.domain.backfill import synthetic_idempotency_key
from payments.models import Allocation, InvoiceMigration, Payment, PaymentAuditLog, Refund, VerificationStatus
from payments.services import errors
from payments.services.audit import os_user
from payments.services.backfill import KEY_COLLISION
from payments.services.payments import payment_record
from tests.billing.api_clients import bearer_client
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

SUMMARY = "/api/billing/admin/finance/summary"
STRONG_PASSWORD = "a-Long-and-unusual-passphrase-42"


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def acme():
    return TenantFactory(id="acme", currency="KES")


@pytest.fixture
def staff_client():
    return token_client(api_token_create(username="finance", staff=True)[1])


@pytest.fixture
def tenant_client(acme):
    return token_client(api_token_create(username="acme-api", tenant_id=acme.pk)[1])


def record_body(**changes) -> dict:
    return {"amountCents": 2_500, "currency": "KES", "channel": "CARD", **changes}


# --- 1. the admin mints no token; no token lives without an expiry -------------------------------


@pytest.fixture
def superuser_client() -> Client:
    user = get_user_model().objects.create_superuser(username="root-admin", email="r@example.com", password=STRONG_PASSWORD)
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_cannot_mint_a_token(superuser_client):
    victim = get_user_model().objects.create_superuser(username="victim", email="v@example.com", password=STRONG_PASSWORD)

    assert superuser_client.get("/admin/knox/authtoken/add/").status_code == 403
    response = superuser_client.post("/admin/knox/authtoken/add/", {"user": victim.pk, "expiry": ""})

    assert response.status_code == 403
    assert not AuthToken.objects.exists()


def test_the_admin_lists_tokens_and_revokes_them(superuser_client, acme):
    api_token_create(username="acme-api", tenant_id=acme.pk)
    token = AuthToken.objects.get()

    listing = superuser_client.get("/admin/knox/authtoken/")
    assert listing.status_code == 200
    assert token.token_key in listing.content.decode()
    assert superuser_client.get(f"/admin/knox/authtoken/{token.pk}/change/").status_code == 200
    response = superuser_client.post(
        "/admin/knox/authtoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True
    )

    assert response.status_code == 200
    assert not AuthToken.objects.exists()


def test_revoking_in_the_admin_needs_the_delete_permission(acme):
    api_token_create(username="acme-api", tenant_id=acme.pk)
    viewer = get_user_model().objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_authtoken"))
    client = Client()
    client.force_login(viewer)

    client.post("/admin/knox/authtoken/", {"action": "revoke_tokens", "_selected_action": [AuthToken.objects.get().pk]})

    assert AuthToken.objects.count() == 1


def test_a_token_without_expiry_cannot_be_saved(acme):
    user = get_user_model().objects.create_user(username="someone")

    with pytest.raises(ApiTokenError):
        AuthToken.objects.create(user=user, expiry=None)
    assert not AuthToken.objects.exists()


def test_a_stored_token_without_expiry_does_not_authenticate(acme, staff_client):
    _user, token = api_token_create(username="acme-api", tenant_id=acme.pk)
    client = token_client(token)
    assert client.get("/api/billing/invoices/tenant").status_code == 200

    AuthToken.objects.filter(user__username="acme-api").update(expiry=None)  # as an old knox admin left it

    response = client.get("/api/billing/invoices/tenant")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_token_header_that_is_not_utf8_is_401_not_500(acme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer \xe9\xe9\xe9")
    assert client.get("/api/billing/invoices/tenant").status_code == 401


# --- 2. the backfill's idempotency key namespace ----------------------------------------------------


def test_a_client_key_in_the_backfill_namespace_is_a_field_error(acme, tenant_client):
    invoice = InvoiceFactory(tenant=acme)

    response = tenant_client.post(
        "/api/payments", record_body(), format="json", HTTP_IDEMPOTENCY_KEY=synthetic_idempotency_key(invoice.pk)
    )

    assert response.status_code == 400
    assert list(response.json()) == ["Idempotency-Key"]
    assert not Payment.objects.exists()


def test_the_service_refuses_a_key_in_the_backfill_namespace(acme):
    with pytest.raises(errors.InvalidInput, match="reserved for the PAY-10 backfill"):
        payment_record(
            tenant=acme, amount_cents=100, currency="KES", channel="CARD", idempotency_key="pay10-backfill:7", actor=None
        )
    assert not Payment.objects.exists()


@pytest.fixture
def squatted_invoice(acme):
    """A legacy PAID invoice the backfill covers with a synthetic payment, whose key a client took
    before keys in that namespace were refused."""
    invoice = InvoiceFactory(tenant=acme, status=InvoiceStatus.PAID, amount_cents=10_000, amount_paid_cents=10_000)
    squatter = PaymentFactory(tenant=acme, amount_cents=100, idempotency_key=synthetic_idempotency_key(invoice.pk))
    return invoice, squatter


def test_a_key_collision_stops_the_backfill_in_one_line_and_writes_nothing(acme, squatted_invoice):
    invoice, squatter = squatted_invoice
    InvoiceFactory(tenant=acme, status=InvoiceStatus.ISSUED)  # another invoice of the same batch

    with pytest.raises(CommandError) as refused:
        call_command("pay10_backfill", "--tenant", "acme", stdout=StringIO())

    message = str(refused.value)
    assert message == KEY_COLLISION.format(
        payment=squatter.pk, tenant="acme", key=synthetic_idempotency_key(invoice.pk), invoice=invoice.pk
    )
    assert "\n" not in message
    assert not InvoiceMigration.objects.exists()
    assert not Allocation.objects.exists()
    assert Payment.objects.count() == 1


def test_a_key_collision_on_first_write_is_a_409_not_a_500(acme, squatted_invoice, staff_client):
    invoice, squatter = squatted_invoice
    payment = PaymentFactory(tenant=acme, amount_cents=1_000)

    response = staff_client.post(
        f"/api/payments/{payment.pk}/allocations", {"invoiceId": invoice.pk, "amountCents": 100}, format="json"
    )

    assert response.status_code == 409
    assert f"payment {squatter.pk}" in response.json()["detail"]
    assert not InvoiceMigration.objects.exists()


# --- 3. staff power is a permission -----------------------------------------------------------------


@pytest.fixture
def bare_staff_client():
    """Staff without any permission, as an admin might create one."""
    return bearer_client(username="bare-staff", staff=True, permissions=False)


def test_staff_without_permissions_can_neither_verify_nor_refund(acme, bare_staff_client):
    pending = PaymentFactory(tenant=acme, verification_status=VerificationStatus.PENDING)
    verified = PaymentFactory(tenant=acme)

    verify = bare_staff_client.post(f"/api/payments/{pending.pk}/verify")
    refund = bare_staff_client.post(f"/api/payments/{verified.pk}/refund", {"amountCents": 100}, format="json")

    assert (verify.status_code, refund.status_code) == (403, 403)
    assert verify.json() == {"detail": "this needs the permission payments.verify_payment", "code": "permission_denied"}
    pending.refresh_from_db()
    assert pending.verification_status == VerificationStatus.PENDING
    assert not Refund.objects.exists()
    assert bare_staff_client.get(SUMMARY).status_code == 403


@pytest.mark.parametrize(
    ("permission", "method", "path", "body"),
    [
        ("verify_payment", "post", "/api/payments/{pending}/verify", None),
        ("reject_payment", "post", "/api/payments/{pending}/reject", {"reason": "bounced"}),
        ("refund_payment", "post", "/api/payments/{verified}/refund", {"amountCents": 100}),
        ("allocate_payment", "post", "/api/payments/{verified}/allocations", {"invoiceId": "{invoice}", "amountCents": 100}),
        ("allocate_payment", "post", "/api/payments/{verified}/auto-allocate", None),
        ("void_invoice", "post", "/api/invoices/{invoice}/void", None),
        ("view_finance_summary", "get", SUMMARY, None),
        ("view_payment", "get", "/api/payments/{verified}", None),
        ("add_payment", "post", "/api/payments", {"tenant": "acme", **record_body()}),
    ],
)
def test_each_endpoint_needs_its_own_named_permission(acme, permission, method, path, body):
    ids = {
        "pending": PaymentFactory(tenant=acme, verification_status=VerificationStatus.PENDING).pk,
        "verified": PaymentFactory(tenant=acme).pk,
        "invoice": MigratedInvoiceFactory(tenant=acme).pk,
    }
    url = path.format(**ids)
    if body is not None:
        body = {key: int(value.format(**ids)) if value == "{invoice}" else value for key, value in body.items()}
    user = get_user_model().objects.create_user(username="clerk", is_staff=True)
    client = token_client(AuthToken.objects.create(user=user)[1])

    def send():
        return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)

    assert send().status_code == 403
    user.user_permissions.add(Permission.objects.get(content_type__app_label="payments", codename=permission))
    assert send().status_code in (200, 201)


def test_reversing_an_allocation_needs_its_permission(acme, staff_client):
    invoice = MigratedInvoiceFactory(tenant=acme)
    payment = PaymentFactory(tenant=acme)
    allocation = staff_client.post(
        f"/api/payments/{payment.pk}/allocations", {"invoiceId": invoice.pk, "amountCents": 100}, format="json"
    ).json()
    user = get_user_model().objects.create_user(username="clerk", is_staff=True)
    client = token_client(AuthToken.objects.create(user=user)[1])
    url = f"/api/allocations/{allocation['id']}/reverse"

    assert client.post(url, {"reason": "wrong"}, format="json").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="reverse_allocation"))
    assert client.post(url, {"reason": "wrong"}, format="json").status_code == 200


def test_the_admin_actions_use_the_same_permission_names(acme):
    payment = PaymentFactory(tenant=acme, verification_status=VerificationStatus.PENDING)
    clerk = get_user_model().objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_payment"), Permission.objects.get(codename="change_payment"))
    client = Client()
    client.force_login(clerk)

    page = client.get("/admin/payments/payment/").content.decode()
    assert "verify_payments" not in page and "reject_payments" not in page

    clerk.user_permissions.add(Permission.objects.get(codename="verify_payment"))
    page = client.get("/admin/payments/payment/").content.decode()
    assert "verify_payments" in page and "reject_payments" not in page
    client.post("/admin/payments/payment/", {"action": "verify_payments", "_selected_action": [payment.pk]})
    payment.refresh_from_db()
    assert payment.verification_status == VerificationStatus.VERIFIED


def test_the_finance_dashboard_needs_the_fin01_permission(acme):
    clerk = get_user_model().objects.create_user(username="clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client = Client()
    client.force_login(clerk)

    assert client.get("/admin/billing/invoice/finance-dashboard/").status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_finance_summary"))
    assert client.get("/admin/billing/invoice/finance-dashboard/").status_code == 200


def test_create_api_token_refuses_staff_bound_to_a_tenant(acme):
    with pytest.raises(CommandError, match=re.escape(ERROR_STAFF_WITH_TENANT)):
        call_command("create_api_token", "runbook", "--staff", "--tenant", "acme", stdout=StringIO())
    assert not AuthToken.objects.exists()


def test_a_staff_user_bound_to_a_tenant_acts_on_that_tenant_only(acme):
    other = TenantFactory(id="other", currency="KES")
    theirs = PaymentFactory(tenant=other, verification_status=VerificationStatus.PENDING)
    ours = PaymentFactory(tenant=acme, verification_status=VerificationStatus.PENDING)
    bound = bearer_client(username="bound-staff", staff=True, tenant=acme)

    assert bound.post(f"/api/payments/{theirs.pk}/verify").status_code == 404
    assert bound.post(f"/api/payments/{ours.pk}/verify").status_code == 200
    assert bound.get(SUMMARY, {"tenant": "other"}).status_code == 403
    assert bound.get(SUMMARY).json()["tenant"] == "acme"
    response = bound.post("/api/payments", {"tenant": "other", **record_body()}, format="json")
    assert response.status_code == 403
    theirs.refresh_from_db()
    assert theirs.verification_status == VerificationStatus.PENDING


# --- 4. bounded money input -----------------------------------------------------------------------


def test_an_amount_over_the_maximum_is_refused(acme, tenant_client):
    response = tenant_client.post("/api/payments", record_body(amountCents=10**15), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["amountCents"]
    assert not Payment.objects.exists()
    assert tenant_client.post("/api/payments", record_body(amountCents=10**12), format="json").status_code == 201


@override_settings(PAY10_MAX_PAYMENT_CENTS=50_000)
def test_the_maximum_is_a_setting(acme, tenant_client):
    assert tenant_client.post("/api/payments", record_body(amountCents=50_001), format="json").status_code == 400
    assert tenant_client.post("/api/payments", record_body(amountCents=50_000), format="json").status_code == 201
    with pytest.raises(errors.InvalidInput, match="at most 50000 cents"):
        payment_record(tenant=acme, amount_cents=50_001, currency="KES", channel="CARD", actor=None)


@pytest.mark.parametrize(
    ("received_at", "message"),
    [
        ("2099-01-01T00:00:00Z", "receivedAt must not be in the future"),
        ("1999-12-31T23:59:59Z", "receivedAt must not be before 2000-01-01"),
        ("0001-01-01T00:00:00Z", "receivedAt must not be before 2000-01-01"),
    ],
)
def test_received_at_is_bounded(acme, tenant_client, received_at, message):
    response = tenant_client.post("/api/payments", record_body(receivedAt=received_at), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["receivedAt"]
    assert response.json()["receivedAt"][0].startswith(message)
    assert not Payment.objects.exists()


def test_received_at_allows_a_small_clock_skew(acme, tenant_client):
    soon = (timezone.now() + timedelta(seconds=60)).isoformat()
    assert tenant_client.post("/api/payments", record_body(receivedAt=soon), format="json").status_code == 201
    with pytest.raises(errors.InvalidInput, match="in the future"):
        payment_record(
            tenant=acme, amount_cents=1, currency="KES", channel="CARD", actor=None,
            received_at=timezone.now() + timedelta(hours=1),
        )


# --- 5. no 500 and no HTML on the edges -------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "CUSTOM", "to": "9999-12-31"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"from": "1899-12-31", "to": "2026-01-01"}, "from"),
        ({"period": ""}, "period"),
    ],
)
@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_finance_summary_dates_are_bounded(staff_client, params, field, zone):
    with override_settings(TIME_ZONE=zone):
        response = staff_client.get(SUMMARY, params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_bounds_themselves_are_accepted(staff_client):
    with override_settings(TIME_ZONE="Pacific/Kiritimati"):
        assert staff_client.get(SUMMARY, {"from": "1900-01-01", "to": "2999-12-31"}).status_code == 200
    with override_settings(TIME_ZONE="America/Los_Angeles"):
        assert staff_client.get(SUMMARY, {"from": "1900-01-01", "to": "2999-12-31"}).status_code == 200


def test_the_dashboard_shows_out_of_range_dates_as_an_error(superuser_client):
    with override_settings(TIME_ZONE="Pacific/Kiritimati"):
        response = superuser_client.get("/admin/billing/invoice/finance-dashboard/", {"from": "0001-01-01", "to": "9999-12-31"})

    assert response.status_code == 200
    assert ERROR_DATE_OUT_OF_RANGE in response.content.decode()


def test_an_empty_fin02_parameter_is_a_400(tenant_client):
    assert tenant_client.get("/api/billing/invoices/tenant", {"status": ""}).status_code == 400


def test_a_payment_for_an_unknown_tenant_is_a_field_error(staff_client):
    response = staff_client.post("/api/payments", {"tenant": "nobody", **record_body()}, format="json")

    assert response.status_code == 400
    assert response.json() == {"tenant": ["tenant 'nobody' does not exist"]}


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_path_is_a_json_404(staff_client, debug):
    with override_settings(DEBUG=debug):
        response = staff_client.get("/api/no/such/thing")
        anonymous = APIClient().post("/api/payments/1/verify/")

    for answer in (response, anonymous):
        assert answer.status_code == 404
        assert answer["Content-Type"] == "application/json"
        assert answer.json()["code"] == "not_found"


def test_a_body_over_the_limit_is_a_json_413_and_writes_nothing(acme, tenant_client, settings):
    body = record_body(reference="x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))

    response = tenant_client.post("/api/payments", body, format="json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_large"
    assert not Payment.objects.exists()


def test_error_bodies_carry_a_code(staff_client):
    response = staff_client.post("/api/payments/987654/verify")

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "code"}
    assert APIClient().get(SUMMARY).json()["code"] == "not_authenticated"


# --- 7. brute force ---------------------------------------------------------------------------------


def test_repeated_wrong_admin_passwords_lock_the_login_out(settings):
    get_user_model().objects.create_superuser(username="finance-admin", email="f@example.com", password=STRONG_PASSWORD)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "finance-admin", "password": "wrong-guess"})

    response = client.post("/admin/login/?next=/admin/", {"username": "finance-admin", "password": STRONG_PASSWORD})

    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302  # not logged in


def test_a_right_password_before_the_limit_logs_in(settings):
    get_user_model().objects.create_superuser(username="finance-admin", email="f@example.com", password=STRONG_PASSWORD)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/admin/login/", {"username": "finance-admin", "password": "wrong-guess"})

    response = client.post("/admin/login/?next=/admin/", {"username": "finance-admin", "password": STRONG_PASSWORD})

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("weak", ["password", "12345678", "finance-admin1", "Tr0ub4dor"])
def test_weak_passwords_are_refused(weak):
    user = get_user_model()(username="finance-admin", email="finance-admin@example.com")
    with pytest.raises(ValidationError):
        validate_password(weak, user)
    validate_password(STRONG_PASSWORD, user)


def test_the_api_throttles_per_token(acme, settings):
    settings.API_THROTTLE_TOKEN_RATE = "3/minute"
    first = bearer_client(username="first", tenant=acme)
    second = bearer_client(username="second", tenant=acme)

    statuses = [first.get("/api/billing/invoices/tenant").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    throttled = first.get("/api/billing/invoices/tenant")
    assert throttled.json()["code"] == "throttled"
    assert int(throttled["Retry-After"]) > 0
    assert second.get("/api/billing/invoices/tenant").status_code == 200


def test_the_api_throttles_anonymous_callers_per_address(settings):
    settings.API_THROTTLE_ANON_RATE = "2/minute"
    here, there = APIClient(REMOTE_ADDR="10.0.0.1"), APIClient(REMOTE_ADDR="10.0.0.2")

    assert [here.get(SUMMARY).status_code for _ in range(3)] == [401, 401, 429]
    assert there.get(SUMMARY).status_code == 401


# --- 8. token lifecycle -----------------------------------------------------------------------------


def test_revoke_api_tokens_revokes_every_token_of_a_user_and_says_how_many(acme):
    for _ in range(3):
        api_token_create(username="acme-api", tenant_id=acme.pk)
    api_token_create(username="other-api", tenant_id=acme.pk)
    out = StringIO()

    call_command("revoke_api_tokens", "acme-api", stdout=out)

    assert out.getvalue().strip() == "Revoked 3 token(s) of acme-api."
    assert list(AuthToken.objects.values_list("user__username", flat=True)) == ["other-api"]


def test_revoke_api_tokens_names_an_unknown_user():
    with pytest.raises(CommandError, match="user 'ghost' does not exist"):
        call_command("revoke_api_tokens", "ghost", stdout=StringIO())


def test_a_user_holds_at_most_the_token_limit(acme, settings):
    settings.API_TOKEN_LIMIT_PER_USER = 2
    api_token_create(username="acme-api", tenant_id=acme.pk)
    api_token_create(username="acme-api", tenant_id=acme.pk)

    with pytest.raises(CommandError) as refused:
        call_command("create_api_token", "acme-api", "--tenant", "acme", stdout=StringIO())

    assert str(refused.value) == ERROR_TOKEN_LIMIT.format(username="acme-api", count=2, limit=2)
    assert AuthToken.objects.count() == 2
    AuthToken.objects.filter(pk=AuthToken.objects.first().pk).update(expiry=timezone.now() - timedelta(days=1))
    api_token_create(username="acme-api", tenant_id=acme.pk)  # an expired token does not count


def test_a_tenant_token_for_an_existing_staff_user_is_refused(acme):
    api_token_create(username="alice", staff=True)

    with pytest.raises(CommandError) as refused:
        call_command("create_api_token", "alice", "--tenant", "acme", stdout=StringIO())

    assert str(refused.value) == ERROR_STAFF_USER_AS_TENANT.format(username="alice", tenant="acme")
    assert AuthToken.objects.count() == 1


# --- 9. reach and trail -----------------------------------------------------------------------------


def test_the_schema_needs_a_token(tenant_client):
    assert APIClient().get("/api/schema/").status_code == 401
    assert tenant_client.get("/api/schema/").status_code == 200


def test_api_audit_rows_carry_the_token_and_the_request_id(acme):
    _user, token = api_token_create(username="acme-api", tenant_id=acme.pk)
    client = token_client(token)

    response = client.post("/api/payments", record_body(), format="json", HTTP_X_REQUEST_ID="trace-42")

    assert response.status_code == 201
    row = PaymentAuditLog.objects.get(payment_id=response.json()["id"])
    assert row.extra["origin"] == {"requestId": "trace-42", "apiTokenKey": AuthToken.objects.get().token_key}
    assert token.startswith(row.extra["origin"]["apiTokenKey"])


def test_command_audit_rows_carry_the_os_user(acme):
    with transaction.atomic():
        payment, _created = payment_record(tenant=acme, amount_cents=100, currency="KES", channel="CASH", actor=None)

    row = PaymentAuditLog.objects.get(payment=payment)
    assert row.extra["origin"] == {"osUser": os_user()}
    assert os_user()


# --- what the outside fuzzer (bin/fuzz-api) found ---------------------------------------------------


@pytest.mark.parametrize("method", ["options", "put", "delete", "patch", "trace"])
def test_an_undocumented_method_is_a_405_before_permissions(tenant_client, method):
    response = tenant_client.generic(method.upper(), "/api/payments/1/verify")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_bodies_are_json_only(acme, tenant_client):
    response = tenant_client.post("/api/payments", {"amountCents": "100", "currency": "KES", "channel": "CARD"})

    assert response.status_code == 415
    assert not Payment.objects.exists()


def test_every_operation_documents_its_json_error_answers(tenant_client):
    schema = tenant_client.get("/api/schema/", {"format": "json"}).json()

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("400", "401", "403", "404", "405", "406", "429"):
                assert list(responses[status]["content"]) == ["application/json"], (method, path, status)
            if method == "post":
                assert {"413", "415"} <= set(responses), (method, path)
            if "requestBody" in operation:
                assert list(operation["requestBody"]["content"]) == ["application/json"], (method, path)


def test_a_blank_reason_is_documented_as_refused(tenant_client):
    schema = tenant_client.get("/api/schema/", {"format": "json"}).json()

    assert schema["components"]["schemas"]["ReasonRequest"]["properties"]["reason"]["pattern"] == r"\S"


def test_backfill_audit_rows_carry_the_os_user(acme):
    InvoiceFactory(tenant=acme, status=InvoiceStatus.PAID, amount_cents=10_000, amount_paid_cents=10_000)
    InvoiceFactory(tenant=acme, status=InvoiceStatus.ISSUED)

    call_command("pay10_backfill", "--tenant", "acme", stdout=StringIO())

    origins = [row.extra["origin"] for row in PaymentAuditLog.objects.filter(backfilled=True)]
    assert len(origins) == 2
    assert origins == [{"osUser": os_user()}] * 2


def test_django_404_and_403_raised_in_a_view_carry_a_code_too():
    from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
    from django.http import Http404

    from config.api import exception_handler

    assert exception_handler(Http404("gone"), {}).data == {"detail": "gone", "code": "not_found"}
    assert exception_handler(DjangoPermissionDenied("no"), {}).data == {"detail": "no", "code": "permission_denied"}


def test_the_schema_documents_the_bearer_token(tenant_client):
    schema = tenant_client.get("/api/schema/", {"format": "json"}).json()

    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearerToken"]["description"]
    }
    assert schema["paths"]["/api/payments/{payment_id}/verify"]["post"]["security"] == [{"bearerToken": []}]
