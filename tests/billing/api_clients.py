"""API clients that authenticate the way real callers do: a knox token in `Authorization: Bearer`."""
from django.contrib.auth import get_user_model
from knox.models import AuthToken
from rest_framework.test import APIClient

from billing.models import Tenant, TenantMember


def bearer_client(*, username: str, staff: bool = False, tenant: Tenant | None = None) -> APIClient:
    user = get_user_model().objects.create_user(username=username, is_staff=staff)
    if tenant is not None:
        TenantMember.objects.create(user=user, tenant=tenant)
    _instance, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
