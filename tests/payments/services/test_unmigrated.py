"""A write to an invoice or payment the backfill has not reached yet migrates it first (SPEC.md)."""
import pytest

from billing.models import InvoiceStatus
from payments.models import Allocation, Credit, InvoiceMigration, PaymentMigration
from payments.selectors.balances import invoices_with_balances
from payments.services import errors
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create
from payments.services.invoices import invoice_void
from payments.services.payments import payment_refund
from tests.billing.factories import InvoiceFactory
from tests.payments.factories import LegacyPaymentFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_allocating_to_an_unmigrated_invoice_migrates_it_first_and_respects_its_legacy_payments(tenant, staff):
    invoice = InvoiceFactory(tenant=tenant, status=InvoiceStatus.PARTIALLY_PAID, amount_cents=10_000, amount_paid_cents=4_000)
    legacy = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=4_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=7_000)

    with pytest.raises(errors.RuleViolation) as raised:
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=7_000, actor=staff)
    assert str(raised.value) == errors.ERROR_INVOICE_OVER_APPLIED.format(id=invoice.pk, balance=6_000, amount=7_000)
    assert not InvoiceMigration.objects.exists()  # the refusal rolled the migration back with it

    allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=6_000, actor=staff)

    assert InvoiceMigration.objects.filter(invoice=invoice).exists()
    assert sorted(Allocation.objects.values_list("payment_id", "amount_cents")) == sorted(
        [(legacy.pk, 4_000), (payment.pk, 6_000)]
    )
    assert invoices_with_balances().get(pk=invoice.pk).status == InvoiceStatus.PAID


def test_voiding_an_unmigrated_paid_invoice_moves_its_legacy_money_to_credit(tenant, staff):
    invoice = InvoiceFactory(tenant=tenant, status=InvoiceStatus.PAID, amount_cents=3_000, amount_paid_cents=3_000)
    legacy = LegacyPaymentFactory(tenant=tenant, invoice=invoice, amount_cents=3_000)

    invoice_void(tenant=ALL_TENANTS, invoice_id=invoice.pk, actor=staff)

    assert invoices_with_balances().get(pk=invoice.pk).status == InvoiceStatus.VOID
    assert list(Credit.objects.values_list("source_payment_id", "amount_cents")) == [(legacy.pk, 3_000)]


def test_refunding_an_unmapped_legacy_payment_maps_it_first(tenant, staff):
    legacy = LegacyPaymentFactory(tenant=tenant, invoice=None, amount_cents=2_000)

    refunds = payment_refund(tenant=ALL_TENANTS, payment_id=legacy.pk, amount_cents=2_000, actor=staff)

    assert PaymentMigration.objects.filter(payment=legacy).exists()
    credit = Credit.objects.get(source_payment=legacy)  # an unlinked legacy payment became credit
    assert [(r.credit_id, r.amount_cents) for r in refunds] == [(credit.pk, 2_000)]
    legacy.refresh_from_db()
    assert (legacy.verification_status, legacy.status) == ("VERIFIED", "REFUNDED")
