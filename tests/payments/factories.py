import factory
from django.utils import timezone

from payments.models import Allocation, Credit, InvoiceMigration, LegacyPaymentStatus, Payment, VerificationStatus
from tests.billing.factories import InvoiceFactory, TenantFactory


class LegacyPaymentFactory(factory.django.DjangoModelFactory):
    """A payment row as the old service wrote it: PAY-10 fields NULL."""

    class Meta:
        model = Payment

    tenant = factory.SubFactory(TenantFactory)
    invoice = None
    amount_cents = 5_000
    currency = factory.SelfAttribute("tenant.currency")
    method = "card"
    reference = factory.Sequence(lambda n: f"ref-{n}")
    status = LegacyPaymentStatus.SUCCEEDED
    received_at = factory.LazyFunction(timezone.now)


class PaymentFactory(LegacyPaymentFactory):
    """A payment recorded after PAY-10."""

    channel = "CARD"
    verification_status = VerificationStatus.VERIFIED
    method = "card"


class MigratedInvoiceFactory(InvoiceFactory):
    """An invoice on the allocation model (its InvoiceMigration marker exists)."""

    class Meta:
        skip_postgeneration_save = True

    marker = factory.RelatedFactory(
        "tests.payments.factories.InvoiceMigrationFactory", factory_related_name="invoice"
    )


class InvoiceMigrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceMigration

    legacy_status = factory.SelfAttribute("invoice.status")
    legacy_amount_paid_cents = factory.SelfAttribute("invoice.amount_paid_cents")
    legacy_paid_cents = 0


class CreditFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Credit

    tenant = factory.SubFactory(TenantFactory)
    currency = factory.SelfAttribute("tenant.currency")
    amount_cents = 1_000
    reason = "test credit"


class AllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Allocation

    invoice = factory.SubFactory(MigratedInvoiceFactory)
    tenant = factory.SelfAttribute("invoice.tenant")
    payment = factory.SubFactory(
        PaymentFactory, tenant=factory.SelfAttribute("..invoice.tenant"), amount_cents=factory.SelfAttribute("..amount_cents")
    )
    credit = None
    amount_cents = 1_000
