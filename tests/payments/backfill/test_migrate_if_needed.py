"""`invoice_migrate_if_needed` / `payment_migrate_if_needed`: a write to a not-yet-migrated row
migrates it first, by exactly the batch rules, and only once."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import InvoiceStatus
from payments.models import (
    Allocation,
    BackfillDeviation,
    Credit,
    InvoiceMigration,
    Payment,
    PaymentAuditLog,
    PaymentMigration,
)
from payments.services import backfill
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import LegacyPaymentFactory

pytestmark = pytest.mark.django_db


def test_invoice_migrate_if_needed_migrates_once_with_its_payments():
    tenant = TenantFactory(id="acme", currency="USD")
    invoice = InvoiceFactory(tenant=tenant, status=InvoiceStatus.PAID, amount_cents=10_000, amount_paid_cents=10_000)
    payment = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=12_000, method=" Card ")

    with transaction.atomic():
        assert backfill.invoice_migrate_if_needed(invoice_id=invoice.pk) is True
    with transaction.atomic():
        assert backfill.invoice_migrate_if_needed(invoice_id=invoice.pk) is False

    payment.refresh_from_db()
    assert (payment.channel, payment.verification_status) == ("CARD", "VERIFIED")
    assert list(Allocation.objects.values_list("invoice_id", "payment_id", "amount_cents", "backfilled")) == [
        (invoice.pk, payment.pk, 10_000, True)
    ]
    assert list(Credit.objects.values_list("source_payment_id", "amount_cents", "tenant_id")) == [
        (payment.pk, 2_000, "acme")
    ]
    migration = InvoiceMigration.objects.get()
    assert (migration.legacy_status, migration.legacy_paid_cents, migration.run_id) == ("PAID", 10_000, None)
    assert PaymentMigration.objects.filter(payment=payment).exists()
    assert sorted(PaymentAuditLog.objects.values_list("event_type", flat=True)) == [
        "INVOICE_BACKFILLED", "PAYMENT_BACKFILLED"
    ]
    assert list(BackfillDeviation.objects.values_list("kind", flat=True)) == ["OVERPAYMENT_TO_CREDIT"]


@pytest.mark.django_db(transaction=True)
def test_migrate_if_needed_refuses_outside_a_transaction():
    invoice = InvoiceFactory()
    with pytest.raises(RuntimeError, match=backfill.BACKFILL_NEEDS_TRANSACTION):
        backfill.invoice_migrate_if_needed(invoice_id=invoice.pk)


def test_payment_migrate_if_needed_migrates_its_unmigrated_invoice_first():
    tenant = TenantFactory(id="acme", currency="USD")
    invoice = InvoiceFactory(
        tenant=tenant, status=InvoiceStatus.PARTIALLY_PAID, amount_cents=10_000, amount_paid_cents=4_000,
        due_date=timezone.localdate() + timedelta(days=5),
    )
    payment = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=3_000, method="mpesa")

    with transaction.atomic():
        assert backfill.payment_migrate_if_needed(payment_id=payment.pk) is True
    with transaction.atomic():
        assert backfill.payment_migrate_if_needed(payment_id=payment.pk) is False

    assert InvoiceMigration.objects.filter(invoice=invoice).exists()
    synthetic = Payment.objects.get(idempotency_key=f"pay10-backfill:{invoice.pk}")
    assert sorted(Allocation.objects.values_list("payment_id", "amount_cents")) == sorted(
        [(payment.pk, 3_000), (synthetic.pk, 1_000)]
    )
    assert not Credit.objects.exists()


def test_payment_migrate_if_needed_credits_an_unlinked_payment():
    tenant = TenantFactory(id="acme", currency="USD")
    payment = LegacyPaymentFactory(tenant=tenant, invoice=None, amount_cents=700, method="wire")

    with transaction.atomic():
        assert backfill.payment_migrate_if_needed(payment_id=payment.pk) is True

    credit = Credit.objects.get()
    assert (credit.source_payment_id, credit.amount_cents, credit.reason) == (
        payment.pk, 700, "PAY-10 backfill: unlinked payment"
    )
    assert not Allocation.objects.exists()


def test_payment_migrate_if_needed_ignores_a_pay10_payment():
    tenant = TenantFactory(id="acme", currency="USD")
    payment = LegacyPaymentFactory(tenant=tenant, channel="CARD", verification_status="VERIFIED")
    with transaction.atomic():
        assert backfill.payment_migrate_if_needed(payment_id=payment.pk) is False
    assert not PaymentMigration.objects.exists()
