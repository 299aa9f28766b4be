"""The one writer of `billing_invoice.status`, the cache of the status engine's verdict.

Every change of a stored status goes through this module: `invoice_statuses_refresh` (the services'
and the daily refresh's: today's verdict where it differs), `invoice_statuses_store` (a set of new
statuses decided elsewhere: the backfill's planner, a VOID), `invoice_statuses_store_staged` (the
same, the statuses being rows of a query: the SQL backfill's), `invoice_statuses_restore_legacy` (the
backfill's reverse). The backfill passes its models (a migration's historical ones) and database.
"""
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from billing.models import Invoice, Tenant
from payments.selectors.balances import invoices_with_balances, invoices_with_balances_grouped

REFRESH_SCOPE_REQUIRED = "name the invoices, a tenant, or all_tenants=True"


def invoice_statuses_refresh(
    *,
    tenant: Tenant | None = None,
    invoice_ids: Iterable[int] | None = None,
    all_tenants: bool = False,
    today: date | None = None,
    include_unmigrated: bool = False,
) -> dict[int, tuple[str, str]]:
    """Store today's verdict for every migrated invoice whose stored status differs.

    Scope: `invoice_ids` (within `tenant` if given), or every invoice of `tenant`, or, only when
    asked with `all_tenants=True`, every invoice of every tenant.

    Safe to run at any time and daily (`manage.py pay10_refresh_statuses`): it changes only what is
    stale. Invoices the backfill has not reached keep their legacy status (the backfill records it)
    unless `include_unmigrated`. Returns {invoice id: (old, new)}.
    """
    if invoice_ids is None and tenant is None and not all_tenants:
        raise ValueError(REFRESH_SCOPE_REQUIRED)
    today = today or timezone.localdate()
    if invoice_ids is not None:
        # A service's handful of invoices: per-row sums, cheapest for a few ids.
        queryset = invoices_with_balances(tenant=tenant, today=today).filter(pk__in=list(invoice_ids))
    else:
        # A whole tenant or database (the daily refresh): one grouped pass.
        queryset = invoices_with_balances_grouped(tenant=tenant, today=today)
    if not include_unmigrated:
        queryset = queryset.filter(is_migrated=True)
    stale = queryset.exclude(status=F("status_today")).values_list("pk", "status", "status_today")
    changes = {pk: (old, new) for pk, old, new in stale}
    invoice_statuses_store({pk: new for pk, (_old, new) in changes.items()})
    return changes


def invoice_statuses_store(
    new_statuses: Mapping[int, str],
    *,
    now: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
    invoice_model=Invoice,
) -> None:
    """Store these statuses ({invoice id: status}) and touch `updated_at`, set-based: on PostgreSQL
    one statement, elsewhere one per distinct status. The caller holds the invoices' locks."""
    if not new_statuses:
        return
    now = now or timezone.now()
    connection = connections[using]
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(invoice_model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} i SET status = v.status, updated_at = %s "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, status) WHERE i.id = v.id",
                [now, "{" + ",".join(map(str, new_statuses)) + "}", list(new_statuses.values())],
            )
        return
    by_status: dict[str, list[int]] = defaultdict(list)
    for pk, status in new_statuses.items():
        by_status[status].append(pk)
    for status, pks in by_status.items():
        invoice_model.objects.using(using).filter(pk__in=pks).update(status=status, updated_at=now)


def invoice_statuses_store_staged(
    source_sql: str, *, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS, invoice_model=Invoice
) -> None:
    """`invoice_statuses_store` where the new statuses are rows of a query (PostgreSQL): `source_sql`
    yields (id, status), e.g. the SQL backfill's staged verdicts. One statement; the caller holds
    the invoices' locks."""
    now = now or timezone.now()
    connection = connections[using]
    table = connection.ops.quote_name(invoice_model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} i SET status = v.status, updated_at = %s FROM ({source_sql}) AS v WHERE i.id = v.id",
            [now],
        )


def invoice_statuses_restore_legacy(*, invoice_model, migration_model, using: str = DEFAULT_DB_ALIAS) -> None:
    """Give every invoice with a migration marker back the legacy status (and `updated_at`, where
    recorded) the marker kept: the backfill's reverse, before it drops the markers."""
    markers = migration_model.objects.using(using)
    legacy = markers.filter(invoice_id=OuterRef("pk"))
    invoices = invoice_model.objects.using(using)
    invoices.filter(pk__in=markers.filter(legacy_updated_at__isnull=False).values("invoice_id")).update(
        updated_at=Subquery(legacy.values("legacy_updated_at"))
    )
    invoices.filter(pk__in=markers.values("invoice_id")).update(status=Subquery(legacy.values("legacy_status")))
