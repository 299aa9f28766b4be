"""SPEC.md "Backfill rules", one rule per test, with the exact rows the backfill writes."""
from datetime import date, datetime, timedelta, timezone as dt_timezone

import pytest

from billing.models import Invoice, InvoiceStatus
from payments.domain import backfill as rules
from payments.models import (
    Allocation,
    BackfillDeviation,
    Credit,
    InvoiceMigration,
    Payment,
    PaymentAuditLog,
    PaymentMigration,
)
from payments.services.backfill import backfill_run
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import LegacyPaymentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.pay10_regression]

TODAY = date(2026, 6, 15)
FUTURE = TODAY + timedelta(days=10)
PAST = TODAY - timedelta(days=10)


def at(day: int) -> datetime:
    return datetime(2026, 5, day, 12, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def tenant():
    return TenantFactory(id="acme", currency="USD")


def run(**kwargs):
    return backfill_run(today=TODAY, batch_size=kwargs.pop("batch_size", 3), **kwargs)


def allocations() -> list[tuple]:
    return sorted(Allocation.objects.values_list("invoice_id", "payment_id", "amount_cents", "backfilled"))


def credits() -> list[tuple]:
    return sorted(Credit.objects.values_list("tenant_id", "source_payment_id", "amount_cents", "reason", "backfilled"))


def kinds() -> list[tuple]:
    return sorted(BackfillDeviation.objects.values_list("kind", "invoice_id", "payment_id"))


def test_paid_shortfall_is_covered_by_one_synthetic_legacy_payment(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="A-1", status="PAID", amount_cents=10_000,
                             amount_paid_cents=10_000, issued_at=at(1), paid_at=at(3), due_date=FUTURE)
    real = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=4_000, received_at=at(2))

    run()

    synthetic = Payment.objects.get(idempotency_key=f"pay10-backfill:{invoice.pk}")
    assert (synthetic.tenant_id, synthetic.invoice_id, synthetic.amount_cents, synthetic.currency) == (
        "acme", invoice.pk, 6_000, "USD")
    assert (synthetic.channel, synthetic.verification_status, synthetic.status, synthetic.method) == (
        "LEGACY", "VERIFIED", "SUCCEEDED", "legacy")
    assert synthetic.received_at == at(3)
    assert allocations() == sorted([(invoice.pk, real.pk, 4_000, True), (invoice.pk, synthetic.pk, 6_000, True)])
    assert credits() == []
    assert kinds() == [("SHORTFALL_COVERED", invoice.pk, synthetic.pk)]
    invoice.refresh_from_db()
    assert invoice.status == "PAID"


@pytest.mark.parametrize(
    "issued_at, paid_at, expected", [(at(4), None, at(4)), (None, None, at(5))], ids=["issued_at", "created_at"]
)
def test_synthetic_payment_received_at_falls_back_to_issued_then_created(tenant, issued_at, paid_at, expected):
    invoice = InvoiceFactory(tenant=tenant, status="PAID", amount_cents=500, amount_paid_cents=500,
                             issued_at=issued_at, paid_at=paid_at, created_at=at(5))
    run()
    assert Payment.objects.get(idempotency_key=f"pay10-backfill:{invoice.pk}").received_at == expected


def test_oldest_payment_is_allocated_first_and_the_overpayment_becomes_credit(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="A-2", status="PAID", amount_cents=10_000,
                             amount_paid_cents=10_000, due_date=FUTURE)
    newer = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=7_000, received_at=at(9))
    older = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=6_000, received_at=at(2))
    same_time_later_id = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=100, received_at=at(9))

    run()

    assert allocations() == sorted([(invoice.pk, older.pk, 6_000, True), (invoice.pk, newer.pk, 4_000, True)])
    assert credits() == sorted([
        ("acme", newer.pk, 3_000, "PAY-10 backfill: overpayment of invoice A-2", True),
        ("acme", same_time_later_id.pk, 100, "PAY-10 backfill: overpayment of invoice A-2", True),
    ])
    assert kinds() == sorted([
        ("OVERPAYMENT_TO_CREDIT", invoice.pk, newer.pk), ("OVERPAYMENT_TO_CREDIT", invoice.pk, same_time_later_id.pk),
    ])


@pytest.mark.parametrize(
    "status, amount_paid, reason",
    [
        ("DRAFT", 0, "PAY-10 backfill: payment on DRAFT invoice A-3"),
        ("VOID", 5_000, "PAY-10 backfill: payment on VOID invoice A-3"),
        ("ISSUED", 0, "PAY-10 backfill: payment on unpaid invoice A-3"),
        ("OVERDUE", 0, "PAY-10 backfill: payment on unpaid invoice A-3"),
    ],
)
def test_money_on_a_draft_void_or_unpaid_invoice_becomes_credit(tenant, status, amount_paid, reason):
    invoice = InvoiceFactory(tenant=tenant, number="A-3", status=status, amount_cents=5_000,
                             amount_paid_cents=amount_paid, due_date=PAST)
    payment = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=5_000)

    run()

    assert allocations() == []
    assert credits() == [("acme", payment.pk, 5_000, reason, True)]
    assert ("UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT", invoice.pk, payment.pk) in kinds()


def test_money_on_a_zero_amount_paid_invoice_is_an_overpayment(tenant):
    invoice = InvoiceFactory(tenant=tenant, number="Z-1", status="PAID", amount_cents=0, amount_paid_cents=0)
    payment = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=300)
    run()
    assert allocations() == []
    assert credits() == [("acme", payment.pk, 300, "PAY-10 backfill: overpayment of invoice Z-1", True)]


def test_pending_failed_and_refunded_payments_are_mapped_not_allocated(tenant):
    invoice = InvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=9_000, due_date=FUTURE)
    pending = LegacyPaymentFactory(tenant=tenant, invoice=invoice, status="PENDING", method="Mobile_Money")
    failed = LegacyPaymentFactory(tenant=tenant, invoice=invoice, status="FAILED", method="check")
    refunded = LegacyPaymentFactory(tenant=tenant, invoice=invoice, status="REFUNDED", method="crypto")

    run()

    assert allocations() == [] and credits() == []
    mapped = dict(Payment.objects.values_list("pk", "channel"))
    assert mapped == {pending.pk: "MOBILE_MONEY", failed.pk: "CHEQUE", refunded.pk: "OTHER"}
    assert dict(Payment.objects.values_list("pk", "verification_status")) == {
        pending.pk: "PENDING", failed.pk: "REJECTED", refunded.pk: "REJECTED"}
    assert PaymentMigration.objects.count() == 3


def test_unlinked_payment_becomes_credit(tenant):
    payment = LegacyPaymentFactory(tenant=tenant, invoice=None, amount_cents=1_234)
    run()
    assert credits() == [("acme", payment.pk, 1_234, "PAY-10 backfill: unlinked payment", True)]
    assert kinds() == [("UNLINKED_PAYMENT_TO_CREDIT", None, payment.pk)]


def test_cross_tenant_link_is_never_allocated_and_is_credited_in_the_payments_own_tenant_run(tenant):
    other = TenantFactory(id="other", currency="USD")
    foreign_invoice = InvoiceFactory(tenant=other, number="O-1", status="PAID", amount_cents=2_000,
                                     amount_paid_cents=2_000)
    payment = LegacyPaymentFactory(tenant=tenant, invoice=foreign_invoice, amount_cents=2_000)

    run(tenant_id="other")
    assert not PaymentMigration.objects.filter(payment=payment).exists()
    synthetic = Payment.objects.get(idempotency_key=f"pay10-backfill:{foreign_invoice.pk}")
    assert allocations() == [(foreign_invoice.pk, synthetic.pk, 2_000, True)]

    run(tenant_id="acme")
    assert credits() == [(
        "acme", payment.pk, 2_000,
        f"PAY-10 backfill: cross-tenant link to invoice {foreign_invoice.pk} of tenant other", True,
    )]
    deviation = BackfillDeviation.objects.get(kind="CROSS_TENANT_LINK")
    assert (deviation.tenant_id, deviation.invoice_number, deviation.payment_id) == ("acme", "O-1", payment.pk)
    assert Allocation.objects.filter(payment=payment).count() == 0


def test_currency_mismatch_is_neither_allocated_nor_credited_but_marked_handled(tenant):
    invoice = InvoiceFactory(tenant=tenant, status="PAID", amount_cents=3_000, amount_paid_cents=3_000)
    foreign = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=3_000, currency="EUR")

    run()

    synthetic = Payment.objects.get(idempotency_key=f"pay10-backfill:{invoice.pk}")
    assert allocations() == [(invoice.pk, synthetic.pk, 3_000, True)]
    assert credits() == []
    assert PaymentMigration.objects.filter(payment=foreign).exists()
    assert ("CURRENCY_MISMATCH", invoice.pk, foreign.pk) in kinds()


@pytest.mark.parametrize(
    "status, amount, amount_paid, due, paid, new_status, inconsistent",
    [
        ("PARTIALLY_PAID", 10_000, 4_000, FUTURE, 4_000, "PARTIALLY_PAID", False),
        ("PARTIALLY_PAID", 10_000, 4_000, PAST, 4_000, "OVERDUE", False),
        ("PARTIALLY_PAID", 10_000, 0, FUTURE, 0, "ISSUED", True),
        ("PARTIALLY_PAID", 10_000, 15_000, FUTURE, 10_000, "PAID", True),
        ("ISSUED", 10_000, 2_500, FUTURE, 2_500, "PARTIALLY_PAID", True),
        ("ISSUED", 10_000, 0, PAST, 0, "OVERDUE", False),
        ("OVERDUE", 10_000, 0, FUTURE, 0, "ISSUED", False),
        ("PAID", 10_000, 0, PAST, 10_000, "PAID", True),
        ("VOID", 10_000, 10_000, PAST, 0, "VOID", True),
        ("DRAFT", 10_000, 0, PAST, 0, "DRAFT", False),
        ("ISSUED", 0, 0, PAST, 0, "PAID", False),
    ],
)
def test_legacy_figure_and_recomputed_status(tenant, status, amount, amount_paid, due, paid, new_status, inconsistent):
    invoice = InvoiceFactory(tenant=tenant, status=status, amount_cents=amount, amount_paid_cents=amount_paid,
                             due_date=due)

    run()

    invoice.refresh_from_db()
    migration = InvoiceMigration.objects.get(invoice=invoice)
    assert (migration.legacy_status, migration.legacy_amount_paid_cents, migration.legacy_paid_cents) == (
        status, amount_paid, paid)
    assert invoice.status == new_status
    assert sum(Allocation.objects.values_list("amount_cents", flat=True)) == paid
    recorded = set(BackfillDeviation.objects.values_list("kind", flat=True))
    assert ("STATUS_CHANGED" in recorded) == (new_status != status)
    assert ("INCONSISTENT_LEGACY_FIGURES" in recorded) == inconsistent
    assert ("SHORTFALL_COVERED" in recorded) == (paid > 0)


def test_every_changed_invoice_and_payment_gets_one_backfill_audit_row(tenant):
    invoice = InvoiceFactory(tenant=tenant, status="PAID", amount_cents=1_000, amount_paid_cents=1_000)
    payment = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=1_500)

    run()

    rows = PaymentAuditLog.objects.order_by("event_type")
    assert [(r.event_type, r.invoice_id, r.backfilled) for r in rows] == [
        ("INVOICE_BACKFILLED", invoice.pk, True), ("PAYMENT_BACKFILLED", invoice.pk, True)]
    invoice_row, payment_row = rows
    allocation = Allocation.objects.get()
    credit = Credit.objects.get()
    assert invoice_row.after["allocations"] == [
        {"allocationId": allocation.pk, "invoiceId": invoice.pk, "paymentId": payment.pk, "amountCents": 1_000}]
    assert payment_row.payment_id == payment.pk and payment_row.credit_id == credit.pk
    assert payment_row.after["credit"]["amountCents"] == 500
    assert payment_row.after["channel"] == "CARD"


def test_plan_invoice_refuses_a_payment_of_another_invoice():
    invoice = rules.LegacyInvoice(1, "acme", "A", "USD", "PAID", 100, 100, None, None, None, at(1))
    stray = rules.LegacyPayment(2, "acme", "USD", 99, "acme", 100, "USD", "card", "SUCCEEDED", at(1))
    with pytest.raises(ValueError, match="not linked to it"):
        rules.plan_invoice(invoice=invoice, payments=[stray], today=TODAY)


def test_a_rerun_migrates_only_invoices_added_since_the_last_run(tenant):
    first = InvoiceFactory(tenant=tenant, status="ISSUED", amount_cents=100, due_date=FUTURE)
    run()
    later = Invoice.objects.create(tenant=tenant, number="LATE", amount_cents=100, currency="USD",
                                   status=InvoiceStatus.ISSUED)
    summary = run()
    assert InvoiceMigration.objects.filter(invoice=first).exists()
    assert summary.total_processed == 1 and InvoiceMigration.objects.filter(invoice=later).exists()
