"""payment_record, payment_verify, payment_reject, payment_refund."""
from datetime import datetime, timezone as dt_timezone

import pytest

from billing.models import InvoiceStatus
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    Credit,
    LegacyPaymentStatus,
    Payment,
    PaymentAuditLog,
    Refund,
    VerificationStatus,
)
from payments.selectors.balances import credits_with_balances, invoices_with_balances, payments_with_balances
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create
from payments.services.credits import credit_apply, credit_issue
from payments.services.inputs import ERROR_TEXT_NOT_STRING, ERROR_TEXT_TOO_LONG
from payments.services.payments import (
    payment_record,
    payment_refund,
    payment_reject,
    payment_verify,
)
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db

CHANNEL_INVALID = errors.ERROR_CHANNEL_INVALID.format(choices="CARD, BANK_TRANSFER, CASH, MOBILE_MONEY, CHEQUE, OTHER")


def record(tenant, staff, **overrides):
    request = {
        "tenant": tenant,
        "amount_cents": 5_000,
        "currency": tenant.currency,
        "channel": "BANK_TRANSFER",
        "reference": "TX-1",
        "actor": staff,
    }
    request.update(overrides)
    return payment_record(**request)


def audit_events(**filters):
    return list(PaymentAuditLog.objects.filter(**filters).order_by("pk").values_list("event_type", flat=True))


def test_record_creates_a_pending_payment_with_legacy_columns_mirrored_and_audited(tenant, staff):
    payment, created = record(tenant, staff)

    assert created
    assert payment.verification_status == VerificationStatus.PENDING
    assert payment.status == LegacyPaymentStatus.PENDING
    assert payment.invoice_id is None
    assert payment.method == "bank_transfer"
    log = PaymentAuditLog.objects.get(payment_id=payment.pk)
    assert log.event_type == AuditEvent.PAYMENT_RECORDED
    assert log.actor == staff
    assert log.amount_cents == 5_000
    assert log.after["payment"]["unallocated_cents"] == 5_000


def test_record_verified_mirrors_succeeded(tenant, staff):
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)

    assert payment.status == LegacyPaymentStatus.SUCCEEDED


def test_record_replay_with_same_key_and_request_returns_the_same_payment(tenant, staff):
    received = datetime(2026, 1, 2, 3, 4, tzinfo=dt_timezone.utc)
    first, created = record(tenant, staff, idempotency_key="k-1", received_at=received)
    again, created_again = record(tenant, staff, idempotency_key="k-1", received_at=received)

    assert created and not created_again
    assert again.pk == first.pk
    assert Payment.objects.count() == 1
    assert audit_events() == [AuditEvent.PAYMENT_RECORDED]


def test_record_same_key_with_a_different_request_is_a_conflict(tenant, staff):
    record(tenant, staff, idempotency_key="k-1")

    with pytest.raises(errors.IdempotencyConflict) as raised:
        record(tenant, staff, idempotency_key="k-1", amount_cents=6_000)

    assert str(raised.value) == errors.ERROR_IDEMPOTENCY_CONFLICT.format(key="k-1")
    assert Payment.objects.count() == 1


def test_record_same_key_in_another_tenant_is_another_payment(tenant, staff):
    other = TenantFactory(id="other", currency="KES")
    first, _ = record(tenant, staff, idempotency_key="k-1")
    second, created = record(other, staff, idempotency_key="k-1")

    assert created and second.pk != first.pk


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount_cents": 0}, errors.ERROR_AMOUNT_NOT_POSITIVE),
        ({"amount_cents": -5}, errors.ERROR_AMOUNT_NOT_POSITIVE),
        ({"amount_cents": 10.5}, errors.ERROR_AMOUNT_NOT_INTEGER),
        ({"amount_cents": True}, errors.ERROR_AMOUNT_NOT_INTEGER),
        ({"amount_cents": "100"}, errors.ERROR_AMOUNT_NOT_INTEGER),
        ({"amount_cents": 10**15 + 1}, errors.ERROR_AMOUNT_TOO_LARGE.format(max=10**15)),
        ({"currency": "USD"}, errors.ERROR_CURRENCY_MISMATCH_TENANT.format(currency="USD", expected="KES")),
        ({"channel": "LEGACY"}, CHANNEL_INVALID),
        ({"channel": "bitcoin"}, CHANNEL_INVALID),
        ({"verification_status": "REJECTED"}, errors.ERROR_VERIFICATION_STATUS_INVALID),
        ({"reference": "x" * 256}, ERROR_TEXT_TOO_LONG.format(field="reference", max=255)),
        ({"reference": 5}, ERROR_TEXT_NOT_STRING.format(field="reference")),
    ],
)
def test_record_refuses_invalid_input_and_writes_nothing(tenant, staff, overrides, message):
    with pytest.raises(errors.InvalidInput) as raised:
        record(tenant, staff, **overrides)

    assert str(raised.value) == message
    assert not Payment.objects.exists()
    assert not PaymentAuditLog.objects.exists()


def test_verify_makes_pending_allocations_paid(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000)
    payment, _ = record(tenant, staff)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=5_000, actor=staff)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED

    verified = payment_verify(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    invoice.refresh_from_db()
    assert verified.verification_status == VerificationStatus.VERIFIED
    assert verified.status == LegacyPaymentStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.PAID
    log = PaymentAuditLog.objects.get(event_type=AuditEvent.PAYMENT_VERIFIED)
    assert log.before["payment"]["verification_status"] == "PENDING"
    assert log.after["payment"]["verification_status"] == "VERIFIED"


def test_verify_twice_changes_nothing_the_second_time(tenant, staff):
    payment, _ = record(tenant, staff)
    payment_verify(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)
    payment_verify(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    assert audit_events(event_type=AuditEvent.PAYMENT_VERIFIED) == [AuditEvent.PAYMENT_VERIFIED]


def test_verify_refuses_a_rejected_payment(tenant, staff):
    payment, _ = record(tenant, staff)
    payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="bounced")

    with pytest.raises(errors.RuleViolation) as raised:
        payment_verify(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff)

    assert str(raised.value) == errors.ERROR_VERIFY_REJECTED.format(id=payment.pk)


def test_operations_on_another_tenants_payment_are_not_found(tenant, staff):
    payment, _ = record(tenant, staff)
    other = TenantFactory(id="other", currency="KES")

    with pytest.raises(errors.NotFound) as raised:
        payment_verify(payment_id=payment.pk, actor=staff, tenant=other)

    assert str(raised.value) == errors.ERROR_PAYMENT_NOT_FOUND.format(id=payment.pk)


def test_reject_releases_every_allocation_and_recomputes_the_invoices(tenant, staff):
    first = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000)
    second = MigratedInvoiceFactory(tenant=tenant, amount_cents=2_000)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=first.pk, amount_cents=3_000, actor=staff)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=second.pk, amount_cents=1_000, actor=staff)

    rejected = payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="cheque bounced")

    assert rejected.verification_status == VerificationStatus.REJECTED
    assert rejected.status == LegacyPaymentStatus.FAILED
    assert AllocationReversal.objects.count() == 2
    assert Allocation.objects.count() == 2  # history stays
    statuses = dict(invoices_with_balances().values_list("pk", "status"))
    assert statuses == {first.pk: InvoiceStatus.ISSUED, second.pk: InvoiceStatus.ISSUED}
    assert audit_events(event_type__in=[AuditEvent.ALLOCATION_REVERSED, AuditEvent.PAYMENT_REJECTED]) == [
        AuditEvent.ALLOCATION_REVERSED,
        AuditEvent.ALLOCATION_REVERSED,
        AuditEvent.PAYMENT_REJECTED,
    ]


def test_reject_requires_a_reason(tenant, staff):
    payment, _ = record(tenant, staff)

    with pytest.raises(errors.InvalidInput) as raised:
        payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="  ")

    assert str(raised.value) == errors.ERROR_REASON_REQUIRED


def test_reject_is_refused_once_money_was_refunded(tenant, staff):
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=100, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="bounced")

    assert str(raised.value) == errors.ERROR_REJECT_REFUNDED.format(id=payment.pk)


def test_reject_is_refused_once_its_credit_was_applied(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=staff)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=500, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="bounced")

    assert str(raised.value) == errors.ERROR_REJECT_CREDIT_APPLIED.format(id=payment.pk, credit=credit.pk)
    payment.refresh_from_db()
    assert payment.verification_status == VerificationStatus.VERIFIED


def test_reject_with_unapplied_credit_leaves_that_credit_holding_nothing(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=staff)

    payment_reject(tenant=ALL_TENANTS, payment_id=payment.pk, actor=staff, reason="bounced")

    assert credits_with_balances().get(pk=credit.pk).remaining_cents == 0
    with pytest.raises(errors.RuleViolation) as raised:
        credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=100, actor=staff)
    assert str(raised.value) == errors.ERROR_CREDIT_OF_REJECTED_PAYMENT.format(id=credit.pk, payment=payment.pk)


def test_refund_takes_unallocated_money_first(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=3_000, actor=staff)

    refunds = payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=2_000, actor=staff, reason="customer asked")

    assert [(r.credit_id, r.amount_cents) for r in refunds] == [(None, 2_000)]
    assert not AllocationReversal.objects.exists()
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 0


def test_refund_takes_credit_then_reverses_newest_allocations_and_reallocates_the_rest(tenant, staff):
    older = MigratedInvoiceFactory(tenant=tenant, amount_cents=2_000)
    newer = MigratedInvoiceFactory(tenant=tenant, amount_cents=2_000)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=older.pk, amount_cents=2_000, actor=staff)
    newest = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=newer.pk, amount_cents=2_000, actor=staff)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=staff)

    refunds = payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_500, actor=staff)

    assert [(r.credit_id, r.amount_cents) for r in refunds] == [(credit.pk, 1_000), (None, 500)]
    assert AllocationReversal.objects.get().allocation_id == newest.pk
    rest = Allocation.objects.filter(invoice=newer, reversal__isnull=True).get()
    assert rest.amount_cents == 1_500
    balances = payments_with_balances().get(pk=payment.pk)
    assert (balances.allocated_cents, balances.unallocated_cents) == (3_500, 0)
    newer.refresh_from_db()
    assert newer.status == InvoiceStatus.PARTIALLY_PAID
    assert Refund.objects.filter(payment=payment).count() == 2


def test_full_refund_marks_the_legacy_status_refunded(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant)
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=5_000, actor=staff)

    payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=5_000, actor=staff)

    payment.refresh_from_db()
    assert payment.status == LegacyPaymentStatus.REFUNDED
    assert payments_with_balances().get(pk=payment.pk).unallocated_cents == 0
    assert invoices_with_balances().get(pk=invoice.pk).paid_cents == 0


def test_refund_beyond_what_is_left_is_refused(tenant, staff):
    payment, _ = record(tenant, staff, verification_status=VerificationStatus.VERIFIED)
    payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=4_000, actor=staff)

    with pytest.raises(errors.RuleViolation) as raised:
        payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_001, actor=staff)

    assert str(raised.value) == errors.ERROR_REFUND_EXCEEDS.format(id=payment.pk, refundable=1_000, amount=1_001)


def test_refund_of_a_pending_payment_is_refused(tenant, staff):
    payment, _ = record(tenant, staff)

    with pytest.raises(errors.RuleViolation) as raised:
        payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=100, actor=staff)

    assert str(raised.value) == errors.ERROR_PAYMENT_NOT_VERIFIED.format(id=payment.pk, status="PENDING")


def test_refund_reverses_applications_of_the_payments_credit(tenant, staff):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=staff)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=1_000, actor=staff)

    refunds = payment_refund(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000, actor=staff)

    assert [(r.credit_id, r.amount_cents) for r in refunds] == [(credit.pk, 1_000)]
    assert credits_with_balances().get(pk=credit.pk).remaining_cents == 0
    assert invoices_with_balances().get(pk=invoice.pk).paid_cents == 0
    assert Credit.objects.count() == 1
