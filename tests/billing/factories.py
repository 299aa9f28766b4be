import factory
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda tenant: tenant.id.replace("-", " ").title())
    currency = "USD"


class InvoiceFactory(factory.django.DjangoModelFactory):
    """A legacy invoice row, as the old service left it."""

    class Meta:
        model = Invoice

    tenant = factory.SubFactory(TenantFactory)
    number = factory.Sequence(lambda n: f"INV-{n:06d}")
    amount_cents = 10_000
    currency = factory.SelfAttribute("tenant.currency")
    status = InvoiceStatus.ISSUED
    amount_paid_cents = 0
    issued_at = factory.LazyFunction(timezone.now)
    due_date = factory.LazyFunction(lambda: timezone.localdate() + timezone.timedelta(days=30))
