"""Building FIN-01's tenant balances (`BalancePayment`, `BalanceCredit`, `TenantBalance`; PostgreSQL only).

Once built, PostgreSQL keeps them exact at every commit (`payments/database/balances_v1.py`). The
build runs after the triggers are installed: it walks the payments awaiting verification and then
every credit in id order, a batch per transaction, each batch through the same
`pay10_balances_refresh` the commits use (which sets each row to the truth under the rows' advisory
locks, whoever comes first), and records its cursors, so a killed build resumes and the service keeps
running meanwhile. Readers compute live until the build row is gone.
"""
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Max

from payments.database import rules
from payments.models import BalanceCredit, BalancePayment, Credit, Payment, TenantBalance, TenantBalanceBuild

BUILD_BATCH_SIZE = 20_000  # payments or credits refreshed per transaction

_BATCH = (
    "WITH batch AS (SELECT {alias}.id FROM {table} {alias} WHERE {alias}.id > %s AND {alias}.id <= %s AND ({condition}) "
    "ORDER BY {alias}.id LIMIT %s) "
    "SELECT pay10_balances_refresh({arrays}), (SELECT max(id) FROM batch)"
)
_PAYMENTS_BATCH = _BATCH.format(
    alias="p", table="payments_payment", condition=rules.PENDING_VERIFICATION,
    arrays="ARRAY(SELECT id FROM batch), '{}'",
)
_CREDITS_BATCH = _BATCH.format(alias="c", table="payments_credit", condition="true", arrays="'{}', ARRAY(SELECT id FROM batch)")


def balances_supported(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "postgresql"


def _walk(cursor, build, *, sql: str, cursor_field: str, upper_field: str, batch_size: int, using: str) -> None:
    while getattr(build, cursor_field) < getattr(build, upper_field):
        with transaction.atomic(using=using):
            cursor.execute(sql, [getattr(build, cursor_field), getattr(build, upper_field), batch_size])
            _void, last_id = cursor.fetchone()
            setattr(build, cursor_field, last_id if last_id is not None else getattr(build, upper_field))
            build.save(using=using, update_fields=[cursor_field])


def balances_build(*, apps=None, using: str = DEFAULT_DB_ALIAS, batch_size: int = BUILD_BATCH_SIZE) -> bool:
    """Run the pending build to its end; True when it built, False off PostgreSQL or when none was pending."""
    if not balances_supported(using=using):
        return False
    get = (lambda name: apps.get_model("payments", name)) if apps else {
        "TenantBalanceBuild": TenantBalanceBuild, "Payment": Payment, "Credit": Credit,
    }.__getitem__
    build_model = get("TenantBalanceBuild")
    build = build_model.objects.using(using).order_by("id").first()
    if build is None:
        return False
    if build.upper_payment_id == 0 and build.upper_credit_id == 0:
        # Rows above these ids were written after the triggers were installed: their commits keep them.
        build.upper_payment_id = get("Payment").objects.using(using).aggregate(top=Max("id"))["top"] or 0
        build.upper_credit_id = get("Credit").objects.using(using).aggregate(top=Max("id"))["top"] or 0
        build.save(using=using, update_fields=["upper_payment_id", "upper_credit_id"])
    with connections[using].cursor() as cursor:
        _walk(cursor, build, sql=_PAYMENTS_BATCH, cursor_field="cursor_payment_id", upper_field="upper_payment_id",
              batch_size=batch_size, using=using)
        _walk(cursor, build, sql=_CREDITS_BATCH, cursor_field="cursor_credit_id", upper_field="upper_credit_id",
              batch_size=batch_size, using=using)
        build_model.objects.using(using).filter(pk=build.pk).delete()
        cursor.execute(
            f"ANALYZE {BalancePayment._meta.db_table}, {BalanceCredit._meta.db_table}, {TenantBalance._meta.db_table}"
        )
    return True


def balances_rebuild(*, using: str = DEFAULT_DB_ALIAS, batch_size: int = BUILD_BATCH_SIZE) -> bool:
    """Throw the balances away and build them again (readers compute live meanwhile)."""
    if not balances_supported(using=using):
        raise ValueError("the tenant balances exist on PostgreSQL only; this database computes live")
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        # TRUNCATE waits for commits refreshing balances right now, and holds off new ones.
        cursor.execute(
            f"TRUNCATE {BalancePayment._meta.db_table}, {BalanceCredit._meta.db_table}, "
            f"{TenantBalance._meta.db_table}, {TenantBalanceBuild._meta.db_table}"
        )
        TenantBalanceBuild.objects.using(using).create()
    return balances_build(using=using, batch_size=batch_size)
