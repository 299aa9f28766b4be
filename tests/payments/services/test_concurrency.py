"""Concurrent operations on PostgreSQL, with real threads each on its own connection: row locks in
the fixed order keep every invariant, losers get a clean refusal (409), nothing deadlocks."""
import random
from collections import Counter

import pytest
from rest_framework.test import APIClient

from billing.services.api_tokens import api_token_create
from payments.models import Allocation, Payment, PaymentAuditLog
from payments.selectors.balances import invoices_with_balances, payments_with_balances
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create, allocation_reverse, payment_auto_allocate
from payments.services.credits import credit_apply, credit_issue
from payments.services.invoices import invoice_void
from payments.services.payments import payment_refund, payment_reject, payment_verify
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory
from tests.payments.helpers import run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20


def staff_client_token() -> str:
    _user, token = api_token_create(username="finance", staff=True)
    return token


def test_concurrent_allocations_to_one_invoice_never_over_apply_it():
    tenant = TenantFactory(id="acme", currency="KES")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    payments = [PaymentFactory(tenant=tenant, amount_cents=700).pk for _ in range(THREADS)]
    token = staff_client_token()

    def allocate(i: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = client.post(
            f"/api/payments/{payments[i]}/allocations", {"invoiceId": invoice.pk, "amountCents": 700}, format="json"
        )
        return response.status_code

    statuses = Counter(run_concurrently(THREADS, allocate))

    assert statuses == {201: 14, 409: 6}  # 14 × 700 = 9,800 fits in 10,000; a 15th would not
    figures = invoices_with_balances().get(pk=invoice.pk)
    assert (figures.paid_cents, figures.balance_cents, figures.status) == (9_800, 200, "PARTIALLY_PAID")
    assert PaymentAuditLog.objects.filter(event_type="ALLOCATION_CREATED").count() == 14


def test_concurrent_allocations_of_one_payment_never_over_spend_it():
    tenant = TenantFactory(id="acme", currency="KES")
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)
    invoices = [MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000).pk for _ in range(THREADS)]

    def allocate(i: int):
        return allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoices[i], amount_cents=600, actor=None)

    results = run_concurrently(THREADS, allocate)

    winners = [result for result in results if isinstance(result, Allocation)]
    losers = [result for result in results if not isinstance(result, Allocation)]
    assert len(winners) == 8  # 8 × 600 = 4,800 fits in 5,000
    assert all(isinstance(loser, errors.RuleViolation) for loser in losers), losers
    assert all("would over-allocate" in str(loser) for loser in losers)
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 200


def test_concurrent_records_with_one_idempotency_key_make_one_payment():
    TenantFactory(id="acme", currency="KES")
    token = staff_client_token()
    body = {"tenant": "acme", "amountCents": 2_500, "currency": "KES", "channel": "CARD", "reference": "R-1"}

    def record(_i: int) -> tuple[int, int]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = client.post("/api/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key")
        return response.status_code, response.json()["id"]

    results = run_concurrently(10, record)

    assert Counter(status for status, _id in results) == {201: 1, 200: 9}
    assert len({payment_id for _status, payment_id in results}) == 1
    assert Payment.objects.count() == 1
    assert PaymentAuditLog.objects.filter(event_type="PAYMENT_RECORDED").count() == 1


def test_mixed_concurrent_operations_never_deadlock_or_break_an_invariant():
    tenant = TenantFactory(id="acme", currency="KES")
    invoices = [MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000).pk for _ in range(4)]
    payments = [
        PaymentFactory(tenant=tenant, amount_cents=2_000, verification_status="VERIFIED" if i % 3 else "PENDING").pk
        for i in range(6)
    ]
    credits = [credit_issue(tenant=ALL_TENANTS, payment_id=payments[i], amount_cents=1_000, actor=None).pk for i in (1, 2)]

    def work(i: int) -> list:
        rng = random.Random(i)
        refused = []
        for _step in range(6):
            payment, invoice, credit = rng.choice(payments), rng.choice(invoices), rng.choice(credits)
            allocation = Allocation.objects.filter(payment_id__in=payments).order_by("?").values_list("pk", flat=True).first()
            operation = rng.choice(
                [
                    lambda: allocation_create(tenant=ALL_TENANTS, payment_id=payment, invoice_id=invoice, amount_cents=500, actor=None),
                    lambda: credit_apply(tenant=ALL_TENANTS, credit_id=credit, invoice_id=invoice, amount_cents=300, actor=None),
                    lambda: payment_auto_allocate(tenant=ALL_TENANTS, payment_id=payment, actor=None),
                    lambda: payment_verify(tenant=ALL_TENANTS, payment_id=payment, actor=None),
                    lambda: payment_reject(tenant=ALL_TENANTS, payment_id=payment, actor=None, reason="bounced"),
                    lambda: payment_refund(tenant=ALL_TENANTS, payment_id=payment, amount_cents=400, actor=None),
                    lambda: invoice_void(tenant=ALL_TENANTS, invoice_id=invoice, actor=None),
                    lambda: allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation or 0, actor=None, reason="undo"),
                    lambda: credit_issue(tenant=ALL_TENANTS, payment_id=payment, amount_cents=100, actor=None),
                ]
            )
            try:
                operation()
            except errors.PaymentOperationError as refusal:
                refused.append(refusal)
        return refused

    results = run_concurrently(THREADS, work)

    unexpected = [result for result in results if not isinstance(result, list)]
    assert not unexpected, unexpected  # no deadlock, no database error: only clean refusals
    for payment in payments_with_balances(tenant=tenant):
        assert payment.unallocated_cents >= 0
    for invoice in invoices_with_balances(tenant=tenant):
        assert invoice.paid_cents + invoice.pending_cents <= invoice.amount_cents
        assert invoice.status == invoice.status_today

