"""payments.services.locking: the fixed lock order and its retry when the set of rows grows."""
import pytest
from django.db import transaction

from payments.services.locking import rows_lock
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_rows_lock_takes_the_lock_again_when_the_invoices_to_lock_grew_meanwhile():
    tenant = TenantFactory(id="acme", currency="KES")
    first, second = MigratedInvoiceFactory(tenant=tenant), MigratedInvoiceFactory(tenant=tenant)
    payment = PaymentFactory(tenant=tenant)
    # The first read sees one invoice; by the re-check another allocation added a second one.
    answers = iter([[first.pk], [first.pk, second.pk], [first.pk, second.pk], [first.pk, second.pk]])
    calls = []

    def invoice_ids():
        calls.append(1)
        return next(answers)

    with transaction.atomic():
        locked = rows_lock(invoice_ids=invoice_ids, payment_ids=lambda: [payment.pk])

    assert sorted(locked.invoices) == [first.pk, second.pk]
    assert list(locked.payments) == [payment.pk]
    assert len(calls) == 4  # read, re-check (grew), read again, re-check (stable)
