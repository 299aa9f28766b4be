"""payments.services.lookups: an operation says which tenant it acts for, or ALL_TENANTS."""
import pytest

from payments.models import AuditEvent, PaymentAuditLog
from payments.services import errors
from payments.services.lookups import ALL_TENANTS, ERROR_TENANT_SCOPE
from payments.services.payments import payment_verify
from tests.billing.factories import TenantFactory
from tests.payments.factories import PaymentFactory

pytestmark = pytest.mark.django_db


def test_an_operation_without_a_tenant_scope_is_refused_and_changes_nothing(tenant, staff):
    payment = PaymentFactory(tenant=tenant, verification_status="PENDING")

    with pytest.raises(TypeError, match=ERROR_TENANT_SCOPE):
        payment_verify(payment_id=payment.pk, actor=staff, tenant=None)

    payment.refresh_from_db()
    assert payment.verification_status == "PENDING"
    assert not PaymentAuditLog.objects.filter(event_type=AuditEvent.PAYMENT_VERIFIED).exists()


def test_all_tenants_reaches_every_tenant_and_a_tenant_only_its_own(tenant, staff):
    other = TenantFactory(id="other", currency="KES")
    payment = PaymentFactory(tenant=other, verification_status="PENDING")

    with pytest.raises(errors.NotFound):
        payment_verify(payment_id=payment.pk, actor=staff, tenant=tenant)
    verified = payment_verify(payment_id=payment.pk, actor=staff, tenant=ALL_TENANTS)

    assert verified.verification_status == "VERIFIED"
