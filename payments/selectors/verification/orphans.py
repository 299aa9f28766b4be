"""Invariant 4: no orphaned allocation. The one definition of an orphan is `rules.ORPHAN` (Python
twin `payments.domain.allocations.is_orphan`): `pay10_verify`, `pay10_cleanup_orphans` and the
backfill's summary all count through `orphan_counts` / `orphaned_allocations` here.

Raw SQL because the point is rows whose foreign keys lead nowhere: the ORM's joins would drop them.
"""
from django.db import DEFAULT_DB_ALIAS, connections

from billing.models import Tenant
from payments.database import rules
from payments.selectors.verification.messages import ORPHANS_FOUND, ORPHANS_OK
from payments.selectors.verification.result import CheckResult, MAX_EXAMPLES, check_result

ORPHAN_COLUMNS = (
    "id", "tenant_id", "invoice_id", "payment_id", "credit_id", "amount_cents", "backfilled", "is_reversed",
    "invoice_missing", "payment_missing", "credit_missing", "invoice_tenant_id", "invoice_currency",
    "payment_tenant_id", "payment_currency", "credit_tenant_id", "credit_currency",
)
_ORPHANS_SQL = f"""
SELECT a.id, a.tenant_id, a.invoice_id, a.payment_id, a.credit_id, a.amount_cents, a.backfilled,
       r.allocation_id IS NOT NULL AS is_reversed,
       i.id IS NULL AS invoice_missing,
       a.payment_id IS NOT NULL AND p.id IS NULL AS payment_missing,
       a.credit_id IS NOT NULL AND c.id IS NULL AS credit_missing,
       i.tenant_id AS invoice_tenant_id, i.currency AS invoice_currency,
       p.tenant_id AS payment_tenant_id, p.currency AS payment_currency,
       c.tenant_id AS credit_tenant_id, c.currency AS credit_currency
FROM payments_allocation a
{rules.ORPHAN_JOINS}
WHERE ({rules.ORPHAN}) {{tenant_filter}}"""


def _orphans_sql(tenant_id: str | None) -> tuple[str, list]:
    """An allocation belongs to a tenant by its own tenant or its invoice's."""
    if tenant_id is None:
        return _ORPHANS_SQL.format(tenant_filter=""), []
    return _ORPHANS_SQL.format(tenant_filter="AND (a.tenant_id = %s OR i.tenant_id = %s)"), [tenant_id, tenant_id]


def _tenant_id(tenant: Tenant | None, tenant_id: str | None) -> str | None:
    return tenant.pk if tenant is not None else tenant_id


def orphaned_allocations(*, tenant: Tenant | None = None, limit: int | None = None) -> list[dict]:
    """Allocations breaking invariant 4, by id, one dict per row with the reason columns (see `ORPHAN_COLUMNS`)."""
    sql, params = _orphans_sql(_tenant_id(tenant, None))
    sql += " ORDER BY a.id"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    orphans = []
    for row in rows:
        orphan = dict(zip(ORPHAN_COLUMNS, row))
        for flag in ("backfilled", "is_reversed", "invoice_missing", "payment_missing", "credit_missing"):
            orphan[flag] = bool(orphan[flag])
        orphan["reason"] = orphan_reason(orphan)
        orphans.append(orphan)
    return orphans


def orphan_counts(
    *, tenant: Tenant | None = None, tenant_id: str | None = None, using: str = DEFAULT_DB_ALIAS
) -> tuple[int, int]:
    """(orphaned allocations, those among them whose invoice, payment or credit is missing).

    Plain SQL on the tables, no model class: usable from a migration (`using` its connection) as
    from the app. Scope with `tenant` or its id `tenant_id`."""
    sql, params = _orphans_sql(_tenant_id(tenant, tenant_id))
    missing = "CASE WHEN invoice_missing OR payment_missing OR credit_missing THEN 1 ELSE 0 END"
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COALESCE(SUM({missing}), 0) FROM ({sql}) orphans", params)
        total, missing = cursor.fetchone()
    return total, int(missing)


def orphaned_allocation_count(*, tenant_id: str | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """How many orphaned allocations (the number the backfill's summary prints)."""
    return orphan_counts(tenant_id=tenant_id, using=using)[0]


def orphan_reason(orphan: dict) -> str:
    """Why an allocation row from `orphaned_allocations` is an orphan, in words."""
    missing = [name for name in ("invoice", "payment", "credit") if orphan[f"{name}_missing"]]
    if missing:
        return "missing " + " and ".join(missing)
    reasons = []
    source = "payment" if orphan["payment_id"] is not None else "credit"
    if orphan["tenant_id"] != orphan["invoice_tenant_id"]:
        reasons.append("allocation tenant differs from invoice tenant")
    if orphan[f"{source}_tenant_id"] != orphan["invoice_tenant_id"]:
        reasons.append(f"{source} tenant differs from invoice tenant")
    if orphan[f"{source}_currency"] != orphan["invoice_currency"]:
        reasons.append(f"{source} currency differs from invoice currency")
    return "; ".join(reasons)


def check_no_orphans(*, tenant: Tenant | None = None) -> CheckResult:
    count, missing = orphan_counts(tenant=tenant)
    return check_result(
        "no_orphan_allocations", count=count, ok_text=ORPHANS_OK, failed_text=ORPHANS_FOUND,
        examples=orphaned_allocations(tenant=tenant, limit=MAX_EXAMPLES) if count else [],
        missing=missing, crossing=count - missing,
    )
