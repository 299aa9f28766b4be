"""API clients that authenticate the way real callers do: a knox token in `Authorization: Bearer`."""
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from rest_framework.test import APIClient

from billing.models import Tenant, TenantMember
from billing.services.api_tokens import staff_group


def bearer_client(
    *, username: str, staff: bool = False, tenant: Tenant | None = None, permissions: bool = True
) -> APIClient:
    """A staff client holds the PAY-10 finance permissions (as `create_api_token --staff` gives)
    unless `permissions=False`."""
    user = get_user_model().objects.create_user(username=username, is_staff=staff)
    if staff and permissions:
        user.groups.add(staff_group())
    if tenant is not None:
        TenantMember.objects.create(user=user, tenant=tenant)
    _instance, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
