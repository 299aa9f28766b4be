"""Who may do what, and for which tenant: shared by every API view.

Staff power is a permission, checked the way the admin checks it (`user.has_perm`): a staff-only
endpoint needs `is_staff` and the endpoint's named permission (docs/api.md lists them). A tenant user
acts for its own tenant only; a staff user bound to a tenant (a `TenantMember`) is limited to that
tenant too; any other staff user acts for every tenant.
"""
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission

from billing.models import Tenant
from config.request_log import note_tenant

ERROR_NO_TENANT = "this API user acts for no tenant"
ERROR_OTHER_TENANT = "you may not read another tenant's data"
ERROR_STAFF_ONLY = "staff only"
ERROR_PERMISSION = "this needs the permission {permission}"
ERROR_UNKNOWN_TENANT = "tenant {tenant!r} does not exist"


class IsStaff(BasePermission):
    message = ERROR_STAFF_ONLY

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StaffPermission(BasePermission):
    """Staff holding the view's `required_permission` ("app_label.codename"); tenants are refused."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            raise PermissionDenied(ERROR_STAFF_ONLY)
        permission = view.required_permission
        if not user.has_perm(permission):
            raise PermissionDenied(ERROR_PERMISSION.format(permission=permission))
        return True


def staff_permission_check(user, permission: str) -> None:
    """For endpoints open to tenants, where only a staff caller needs a permission."""
    if user.is_staff and not user.has_perm(permission):
        raise PermissionDenied(ERROR_PERMISSION.format(permission=permission))


def user_tenant_id(user) -> str | None:
    member = getattr(user, "tenant_member", None)
    return member.tenant_id if member is not None else None


def tenant_scope(user) -> Tenant | None:
    """The one tenant a caller may act for, or None for staff acting for every tenant."""
    own_tenant_id = user_tenant_id(user)
    if own_tenant_id is None:
        if user.is_staff:
            return None
        raise PermissionDenied(ERROR_NO_TENANT)
    return Tenant.objects.get(pk=own_tenant_id)


def tenant_for_request(request, requested_tenant_id: str | None, *, unknown_is_field_error: bool = False) -> Tenant | None:
    """The tenant a request acts on: a free staff user's choice (None = all), otherwise the caller's own.

    A caller bound to a tenant naming another gets 403; an unknown tenant gets 404 (or, for a tenant
    named in a request body, a 400 under `tenant`).
    """
    own_tenant_id = user_tenant_id(request.user)
    if request.user.is_staff and own_tenant_id is None:
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
        message = ERROR_UNKNOWN_TENANT.format(tenant=tenant_id)
        if unknown_is_field_error:
            raise ValidationError({"tenant": [message]})
        raise NotFound(message)
    note_tenant(request, tenant.pk)
    return tenant
