from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from knox.models import AuthToken

from billing.services.api_tokens import ERROR_TENANT_REQUIRED
from tests.billing.factories import TenantFactory

pytestmark = pytest.mark.django_db


def _create_token(*args) -> list[str]:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().splitlines()


def test_create_api_token_prints_the_token_last_and_stores_only_its_hash():
    TenantFactory(id="rcme-dev")
    lines = _create_token("alice", "--tenant", "rcme-dev")
    token = lines[-1]
    assert len(token) >= 32
    stored = AuthToken.objects.get(user__username="alice")
    assert stored.expiry is not None
    assert token not in (stored.digest, stored.token_key)
    assert stored.user.tenant_member.tenant_id == "rcme-dev"


def test_staff_token_needs_no_tenant_and_the_user_is_reused():
    first = _create_token("ops", "--staff")[-1]
    second = _create_token("ops", "--staff")[-1]
    assert first != second
    assert AuthToken.objects.filter(user__username="ops", user__is_staff=True).count() == 2


def test_token_for_unknown_tenant_is_refused_and_creates_nothing():
    with pytest.raises(CommandError, match="tenant 'nope' does not exist"):
        _create_token("bob", "--tenant", "nope")
    assert not AuthToken.objects.exists()


def test_non_staff_user_needs_a_tenant():
    with pytest.raises(CommandError, match=ERROR_TENANT_REQUIRED):
        _create_token("carol")


def test_a_tenant_user_cannot_be_moved_to_another_tenant():
    TenantFactory(id="a")
    TenantFactory(id="b")
    _create_token("dave", "--tenant", "a")
    with pytest.raises(CommandError, match="already acts for tenant 'a'"):
        _create_token("dave", "--tenant", "b")


def test_bearer_token_authenticates_a_request(client):
    token = _create_token("erin", "--staff")[-1]
    response = client.get("/api/schema/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401
