"""Finding the rows an operation names, within the caller's tenant (reads; no lock taken).

An operation takes `tenant`: a `Tenant` (the API's tenant-scoped callers: an id of another tenant is
"not found", never "forbidden"), or `ALL_TENANTS`, said explicitly, for a caller acting for every
tenant (staff: the admin, an unscoped API token). The getters take `tenant_id_of(tenant)`.
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


class AllTenants:
    """The scope of a caller acting for every tenant; use the one instance, `ALL_TENANTS`."""

    def __repr__(self) -> str:
        return "ALL_TENANTS"


ALL_TENANTS = AllTenants()
ERROR_TENANT_SCOPE = "an operation needs its tenant, or ALL_TENANTS to act for every tenant"


def tenant_id_of(tenant: "Tenant | AllTenants") -> str | None:
    """The tenant id to scope the getters by; None for `ALL_TENANTS`."""
    if tenant is ALL_TENANTS:
        return None
    if not isinstance(tenant, Tenant):
        raise TypeError(ERROR_TENANT_SCOPE)
    return tenant.pk
