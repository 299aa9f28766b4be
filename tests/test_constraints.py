"""Each database constraint twice: the clear error at the Python level (model validation names the
rule) and the IntegrityError when a write goes around it."""
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from billing.models import Invoice
from payments.models import Allocation, Credit, Payment, Refund
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def _assert_rejected_twice(instance, message: str) -> None:
    """`message` is what the Python-level error says: the rule's name, or Django's own wording."""
    with pytest.raises(ValidationError) as error:
        instance.full_clean()
    assert message in str(error.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        instance.save()


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"amount_cents": -1}, "billing_invoice_amount_non_negative"),
        ({"amount_paid_cents": -1}, "billing_invoice_amount_paid_non_negative"),
        ({"status": "SETTLED"}, "Value 'SETTLED' is not a valid choice"),
    ],
)
def test_invoice_row_rules(fields, constraint):
    tenant = TenantFactory()
    values = {"number": "INV-X", "amount_cents": 100, "currency": "USD", "status": "ISSUED", "amount_paid_cents": 0}
    invoice = Invoice(tenant=tenant, **(values | fields))
    _assert_rejected_twice(invoice, constraint)


def test_invoice_number_is_unique_per_tenant_only():
    first = InvoiceFactory(number="INV-1")
    InvoiceFactory(number="INV-1")  # another tenant may reuse it
    duplicate = Invoice(tenant=first.tenant, number="INV-1", amount_cents=1, currency="USD", status="ISSUED")
    _assert_rejected_twice(duplicate, "Invoice with this Tenant and Number already exists")


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"amount_cents": 0}, "payments_payment_amount_positive"),
        ({"status": "LOST"}, "Value 'LOST' is not a valid choice"),
        ({"channel": "BITCOIN"}, "Value 'BITCOIN' is not a valid choice"),
        ({"verification_status": "MAYBE"}, "Value 'MAYBE' is not a valid choice"),
    ],
)
def test_payment_row_rules(fields, constraint):
    payment = PaymentFactory.build(tenant=TenantFactory(), **fields)
    _assert_rejected_twice(payment, constraint)


def test_idempotency_key_is_unique_per_tenant_when_set():
    first = PaymentFactory(idempotency_key="key-1")
    PaymentFactory(idempotency_key="key-1")  # another tenant
    PaymentFactory(tenant=first.tenant, idempotency_key=None)
    PaymentFactory(tenant=first.tenant, idempotency_key=None)  # NULL keys never collide
    duplicate = PaymentFactory.build(tenant=first.tenant, idempotency_key="key-1")
    _assert_rejected_twice(duplicate, "payments_payment_idempotency_key_unique_per_tenant")


def test_allocation_amount_must_be_positive():
    allocation = AllocationFactory.build(
        invoice=MigratedInvoiceFactory(), payment=PaymentFactory(), amount_cents=0
    )
    allocation.tenant = allocation.invoice.tenant
    _assert_rejected_twice(allocation, "payments_allocation_amount_positive")


@pytest.mark.parametrize("sources", ["both", "neither"])
def test_allocation_applies_exactly_one_of_payment_or_credit(sources):
    invoice = MigratedInvoiceFactory()
    payment = PaymentFactory(tenant=invoice.tenant) if sources == "both" else None
    credit = CreditFactory(tenant=invoice.tenant) if sources == "both" else None
    allocation = Allocation(tenant=invoice.tenant, invoice=invoice, payment=payment, credit=credit, amount_cents=1)
    _assert_rejected_twice(allocation, "payments_allocation_one_source")


def test_credit_amount_must_be_positive():
    credit = Credit(tenant=TenantFactory(), currency="USD", amount_cents=0, reason="x")
    _assert_rejected_twice(credit, "payments_credit_amount_positive")


def test_refund_amount_must_be_positive():
    payment = PaymentFactory()
    refund = Refund(tenant=payment.tenant, payment=payment, amount_cents=-5)
    _assert_rejected_twice(refund, "payments_refund_amount_positive")


def test_financial_rows_protect_what_they_point_at():
    allocation = AllocationFactory()
    with pytest.raises(ProtectedError):
        allocation.invoice.delete()
    with pytest.raises(ProtectedError):
        allocation.payment.delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=allocation.payment_id)._raw_delete(using="default")
        connection.check_constraints()  # foreign keys are checked at commit; check now
