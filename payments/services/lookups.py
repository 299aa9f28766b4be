"""Finding the rows an operation names, within the caller's tenant (reads; no lock taken).

`tenant_id=None` means the caller acts for every tenant (staff: the admin, the commands); the API
always passes its tenant, so an id of another tenant is "not found", never "forbidden".
"""
from billing.models import Invoice, Tenant
from payments.models import Allocation, Credit, Payment
from payments.services import errors


def _scoped_get(model, *, pk, tenant_id: str | None, message: str):
    queryset = model.objects.all()
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    try:
        return queryset.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError, OverflowError):
        raise errors.NotFound(message.format(id=pk)) from None


def invoice_get(*, invoice_id: int, tenant_id: str | None) -> Invoice:
    return _scoped_get(Invoice, pk=invoice_id, tenant_id=tenant_id, message=errors.ERROR_INVOICE_NOT_FOUND)


def payment_get(*, payment_id: int, tenant_id: str | None) -> Payment:
    return _scoped_get(Payment, pk=payment_id, tenant_id=tenant_id, message=errors.ERROR_PAYMENT_NOT_FOUND)


def credit_get(*, credit_id: int, tenant_id: str | None) -> Credit:
    return _scoped_get(Credit, pk=credit_id, tenant_id=tenant_id, message=errors.ERROR_CREDIT_NOT_FOUND)


def allocation_get(*, allocation_id: int, tenant_id: str | None) -> Allocation:
    return _scoped_get(Allocation, pk=allocation_id, tenant_id=tenant_id, message=errors.ERROR_ALLOCATION_NOT_FOUND)


def tenant_id_of(tenant: Tenant | None) -> str | None:
    """The tenant to scope by; None (every tenant) when the caller passed none."""
    return tenant.pk if tenant is not None else None
