"""API users and their tokens (django-rest-knox: stored hashed, expiring)."""
from django.contrib.auth import get_user_model
from django.db import transaction
from knox.models import AuthToken

from billing.models import Tenant, TenantMember

ERROR_TENANT_NOT_FOUND = "tenant {tenant!r} does not exist"
ERROR_TENANT_REQUIRED = "a non-staff API user needs --tenant"
ERROR_TENANT_CHANGE = "user {username!r} already acts for tenant {current!r}, not {tenant!r}"


class ApiTokenError(Exception):
    pass


@transaction.atomic
def api_token_create(*, username: str, tenant_id: str | None = None, staff: bool = False) -> tuple[object, str]:
    """Create the user if needed, bind it to its tenant, and issue a token. Returns (user, token)."""
    tenant = None
    if tenant_id is not None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise ApiTokenError(ERROR_TENANT_NOT_FOUND.format(tenant=tenant_id))
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
    if staff and not user.is_staff:
        user.is_staff = True
    user.save()
    membership = TenantMember.objects.filter(user=user).first()
    if tenant is not None:
        if membership is not None and membership.tenant_id != tenant.pk:
            raise ApiTokenError(ERROR_TENANT_CHANGE.format(username=username, current=membership.tenant_id, tenant=tenant.pk))
        if membership is None:
            TenantMember.objects.create(user=user, tenant=tenant)
    elif not user.is_staff and membership is None:
        raise ApiTokenError(ERROR_TENANT_REQUIRED)
    _instance, token = AuthToken.objects.create(user=user)
    return user, token
