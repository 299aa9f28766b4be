import pytest
from django.contrib.auth import get_user_model

from tests.billing.factories import TenantFactory


@pytest.fixture
def staff():
    """A finance staff user: the actor of the services' audited writes."""
    return get_user_model().objects.create(username="finance", is_staff=True)


@pytest.fixture
def tenant():
    return TenantFactory(id="acme", currency="KES")
