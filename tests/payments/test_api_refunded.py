"""Issue 13 regression: a payment's figures show what was refunded of it, whichever way the money
went back (out of its unallocated money or out of a credit it became)."""
import pytest
from rest_framework.test import APIClient

from billing.services.api_tokens import api_token_create
from payments.models import Credit, LegacyPaymentStatus, Payment
from payments.services.credits import credit_issue
from payments.services.lookups import ALL_TENANTS
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    _user, token = api_token_create(username="finance", staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_money_voided_into_a_credit_then_refunded_in_full_shows_the_refund(tenant, staff_client):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
    assert staff_client.post(
        f"/api/payments/{payment.pk}/allocations", {"invoiceId": invoice.pk, "amountCents": 1_000}, format="json"
    ).status_code == 201
    assert staff_client.post(f"/api/invoices/{invoice.pk}/void", {}, format="json").status_code == 200
    credit = Credit.objects.get(source_payment=payment)
    assert credit.amount_cents == 1_000

    refund = staff_client.post(f"/api/payments/{payment.pk}/refund", {"amountCents": 1_000}, format="json")
    shown = staff_client.get(f"/api/payments/{payment.pk}").json()

    assert refund.status_code == 200
    assert [(r["creditId"], r["amountCents"]) for r in refund.json()["refunds"]] == [(credit.pk, 1_000)]
    assert Payment.objects.get(pk=payment.pk).status == LegacyPaymentStatus.REFUNDED
    for document in (refund.json()["payment"], shown):
        assert document["refundedTotalCents"] == 1_000  # was invisible: refundedCents 0, creditedCents 1000
        assert document["legacyStatus"] == LegacyPaymentStatus.REFUNDED
        # the unallocated arithmetic is unchanged: credited money is not unallocated money
        assert (document["creditedCents"], document["refundedCents"], document["unallocatedCents"]) == (1_000, 0, 0)


def test_refunds_out_of_unallocated_money_and_out_of_a_credit_add_up(tenant, staff_client):
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)
    credit_issue(payment_id=payment.pk, amount_cents=1_000, actor=None, tenant=ALL_TENANTS)

    response = staff_client.post(f"/api/payments/{payment.pk}/refund", {"amountCents": 4_500}, format="json")

    assert response.status_code == 200
    document = response.json()["payment"]
    assert (document["refundedCents"], document["refundedTotalCents"]) == (4_000, 4_500)
    assert document["unallocatedCents"] == 0
