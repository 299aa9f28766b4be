"""API users and their tokens (django-rest-knox: stored hashed, always expiring).

Tokens are minted here only (`create_api_token`), never in the admin: a tenant user's token acts for
its tenant; a staff user's token holds the PAY-10 finance permissions through the `STAFF_GROUP`
group. A staff user bound to a tenant is limited to it (`billing.api.access`); the command refuses
to make one. A user holds at most `API_TOKEN_LIMIT_PER_USER` live tokens; `revoke_api_tokens`
revokes all of a user's.
"""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from knox.models import AuthToken

from billing.models import Tenant, TenantMember

ERROR_TENANT_NOT_FOUND = "tenant {tenant!r} does not exist"
ERROR_TENANT_REQUIRED = "a non-staff API user needs --tenant"
ERROR_TENANT_CHANGE = "user {username!r} already acts for tenant {current!r}, not {tenant!r}"
ERROR_STAFF_WITH_TENANT = (
    "a staff token acts for every tenant: --staff and --tenant are not combined (make a tenant token instead)"
)
ERROR_STAFF_USER_AS_TENANT = (
    "user {username!r} is staff: a token for it would be a staff token, not one for tenant {tenant!r}; "
    "use another username"
)
ERROR_TENANT_USER_AS_STAFF = "user {username!r} acts for tenant {tenant!r}: it cannot become staff; use another username"
ERROR_TOKEN_LIMIT = (
    "user {username!r} already holds {count} live token(s), the limit (API_TOKEN_LIMIT_PER_USER={limit}); "
    "revoke them first: manage.py revoke_api_tokens {username}"
)
ERROR_TOKEN_WITHOUT_EXPIRY = "an API token must expire (REST_KNOX TOKEN_TTL)"
ERROR_NO_SUCH_USER = "user {username!r} does not exist"

STAFF_GROUP = "pay10 finance staff"
# What a staff token may do: every named operation permission and the model permissions the API's
# staff reads and writes need (docs/api.md lists which endpoint needs which).
STAFF_PERMISSIONS = (
    "payments.verify_payment",
    "payments.reject_payment",
    "payments.refund_payment",
    "payments.allocate_payment",
    "payments.reverse_allocation",
    "payments.void_invoice",
    "payments.view_finance_summary",
    "payments.add_payment",
    "payments.view_payment",
    "billing.view_invoice",
)


class ApiTokenError(Exception):
    pass


@receiver(pre_save, sender=AuthToken)
def token_must_expire(sender, instance: AuthToken, **kwargs) -> None:
    """No token lives without an expiry, whoever writes it (the admin, a shell, knox itself)."""
    if instance.expiry is None:
        raise ApiTokenError(ERROR_TOKEN_WITHOUT_EXPIRY)


def staff_group() -> Group:
    """The group holding `STAFF_PERMISSIONS`, created or completed on demand."""
    group, _created = Group.objects.get_or_create(name=STAFF_GROUP)
    wanted = []
    for name in STAFF_PERMISSIONS:
        app_label, codename = name.split(".")
        wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    group.permissions.add(*wanted)
    return group


def live_tokens(user):
    return AuthToken.objects.filter(user=user, expiry__gt=timezone.now())


@transaction.atomic
def api_token_create(*, username: str, tenant_id: str | None = None, staff: bool = False) -> tuple[object, str]:
    """Create the user if needed, bind it to its tenant (or make it staff), and issue a token.
    Returns (user, token)."""
    if staff and tenant_id is not None:
        raise ApiTokenError(ERROR_STAFF_WITH_TENANT)
    tenant = None
    if tenant_id is not None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise ApiTokenError(ERROR_TENANT_NOT_FOUND.format(tenant=tenant_id))
    user_model = get_user_model()
    user, created = user_model.objects.select_for_update().get_or_create(username=username)
    membership = TenantMember.objects.filter(user=user).first()
    if tenant is not None and user.is_staff:
        raise ApiTokenError(ERROR_STAFF_USER_AS_TENANT.format(username=username, tenant=tenant.pk))
    if staff and membership is not None:
        raise ApiTokenError(ERROR_TENANT_USER_AS_STAFF.format(username=username, tenant=membership.tenant_id))
    if tenant is None and not staff and not user.is_staff and membership is None:
        raise ApiTokenError(ERROR_TENANT_REQUIRED)
    if created:
        user.set_unusable_password()
    if staff and not user.is_staff:
        user.is_staff = True
    user.save()
    if user.is_staff:
        user.groups.add(staff_group())
    if tenant is not None:
        if membership is not None and membership.tenant_id != tenant.pk:
            raise ApiTokenError(ERROR_TENANT_CHANGE.format(username=username, current=membership.tenant_id, tenant=tenant.pk))
        if membership is None:
            TenantMember.objects.create(user=user, tenant=tenant)
    limit = settings.API_TOKEN_LIMIT_PER_USER
    count = live_tokens(user).count()
    if count >= limit:
        raise ApiTokenError(ERROR_TOKEN_LIMIT.format(username=username, count=count, limit=limit))
    _instance, token = AuthToken.objects.create(user=user)
    return user, token


@transaction.atomic
def api_tokens_revoke(*, username: str) -> int:
    """Delete every token of the user (expired ones too); the number deleted."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ApiTokenError(ERROR_NO_SUCH_USER.format(username=username))
    deleted, _by_model = AuthToken.objects.filter(user=user).delete()
    return deleted
