"""Who may read which tenant: shared by every API view."""
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission

from billing.models import Tenant
from config.request_log import note_tenant

ERROR_NO_TENANT = "this API user acts for no tenant"
ERROR_OTHER_TENANT = "you may not read another tenant's data"


class IsStaff(BasePermission):
    message = "staff only"

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def user_tenant_id(user) -> str | None:
    member = getattr(user, "tenant_member", None)
    return member.tenant_id if member is not None else None


def tenant_for_request(request, requested_tenant_id: str | None) -> Tenant | None:
    """The tenant a request acts on: a staff user's choice (None = all), otherwise the caller's own.

    A non-staff caller naming another tenant gets 403; an unknown tenant gets 404.
    """
    own_tenant_id = user_tenant_id(request.user)
    if request.user.is_staff:
        tenant_id = requested_tenant_id
        if tenant_id is None:
            return None
    else:
        if own_tenant_id is None:
            raise PermissionDenied(ERROR_NO_TENANT)
        if requested_tenant_id is not None and requested_tenant_id != own_tenant_id:
            raise PermissionDenied(ERROR_OTHER_TENANT)
        tenant_id = own_tenant_id
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    note_tenant(request, tenant.pk)
    return tenant
