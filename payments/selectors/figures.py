"""Reading the FIN-01/FIN-02 read model (`InvoiceFigures`, `InvoiceRollup`, `InvoiceDueRollup`,
`InvoiceBlock`).

`figures_ready()` says whether readers may use it: `PAY10_READ_MODEL` on (the default), PostgreSQL
(which keeps it, see `payments/database/figures_v1.py`), UTC days (`TIME_ZONE` = UTC, the days
it is keyed by), and no build in progress. Inside a transaction it first brings that transaction's
own pending upkeep forward, so a reader sees its own writes. Otherwise the readers compute live from
the allocations; both ways give the same figures (tests hold them equal).

The model stores, per invoice, the state the status engine's verdict depends on besides the date
(`FiguresState`); today's status and aging bucket follow from it and the due date here, through the
engine itself, so no second copy of its rules exists.
"""
from datetime import date, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q, QuerySet, Sum
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from billing.models import Invoice, Tenant
from payments.domain import status as engine
from payments.models import (
    INVOICE_BLOCK_BITS,
    NO_DUE_DAY,
    FiguresState,
    InvoiceBlock,
    InvoiceDueRollup,
    InvoiceFigures,
    InvoiceFiguresBuild,
    InvoiceRollup,
    TenantBalance,
    TenantBalanceBuild,
)

_installed: dict[str, bool] = {}

# An amount and a paid figure that put an invoice in each money state, to ask the engine with.
_MONEY_OF_STATE = {FiguresState.PAID: (1, 1), FiguresState.PART: (2, 1), FiguresState.UNPAID: (1, 0)}
NO_DUE = date.fromisoformat(NO_DUE_DAY)


# What `figures_state()` answers (shown by /readyz): readers use the read model only when "ready".
READ_MODEL_READY = "ready"
READ_MODEL_BUILDING = "building"
READ_MODEL_NOT_INSTALLED = "not_installed"  # before 0004_invoice_figures
READ_MODEL_NOT_USED = "not_used"  # SQLite, or TIME_ZONE other than UTC: readers compute live
READ_MODEL_OFF = "off"  # PAY10_READ_MODEL=false


def figures_state(*, using: str = DEFAULT_DB_ALIAS) -> str:
    connection = connections[using]
    if not settings.PAY10_READ_MODEL:
        return READ_MODEL_OFF
    if connection.vendor != "postgresql" or settings.TIME_ZONE != "UTC":
        return READ_MODEL_NOT_USED
    if using not in _installed:
        with connection.cursor() as cursor:
            _installed[using] = InvoiceRollup._meta.db_table in connection.introspection.table_names(cursor)
    if not _installed[using]:
        return READ_MODEL_NOT_INSTALLED
    if InvoiceFiguresBuild.objects.using(using).exists():
        return READ_MODEL_BUILDING
    return READ_MODEL_READY


def figures_ready(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    if figures_state(using=using) != READ_MODEL_READY:
        return False
    connection = connections[using]
    if connection.in_atomic_block:
        # Read this transaction's own writes: bring its commit-time upkeep forward (SET CONSTRAINTS
        # runs what is queued), then queue what follows for the commit again.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS pay10_figures_flush IMMEDIATE; SET CONSTRAINTS pay10_figures_flush DEFERRED")
    return True


@receiver(post_migrate)
def forget_figures_state(**kwargs) -> None:
    _installed.clear()
    _balances_installed.clear()


_balances_installed: dict[str, bool] = {}


def balances_ready(*, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether FIN-01 may read the tenant balances (`TenantBalance`, `payments/database/balances_v1.py`):
    `PAY10_READ_MODEL` on, PostgreSQL, `0011_tenant_balances` applied and no build in progress. Inside a
    transaction it first brings that transaction's own pending upkeep forward (the figures' with it,
    in the order the commit runs them), so a reader sees its own writes."""
    connection = connections[using]
    if not settings.PAY10_READ_MODEL or connection.vendor != "postgresql":
        return False
    if using not in _balances_installed:
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        _balances_installed[using] = TenantBalance._meta.db_table in tables  # the last table 0011 creates
    if not _balances_installed[using] or TenantBalanceBuild.objects.using(using).exists():
        return False
    if connection.in_atomic_block:
        flushes = "pay10_figures_flush, pay10_balances_flush"
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {flushes} IMMEDIATE; SET CONSTRAINTS {flushes} DEFERRED")
    return True


def tenant_balances(*, tenant: Tenant | None, using: str = DEFAULT_DB_ALIAS) -> dict[str, dict[str, int]]:
    """Per currency, the tenant's (or every tenant's) pending verification over all time and unapplied
    credit: the slots of `TenantBalance` added up (16 rows per tenant and currency)."""
    rows = TenantBalance.objects.using(using).all()
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    totals = rows.values("currency").annotate(
        pending=Sum("pending_verification_cents"), credit=Sum("unapplied_credit_cents")
    ).order_by()
    return {row["currency"]: {"pending": int(row["pending"]), "credit": int(row["credit"])} for row in totals}


def status_of_state(state: str, due_date: date | None, today: date) -> str:
    """Today's status of an invoice in `state` with this due date: the engine's verdict."""
    if due_date == NO_DUE:
        due_date = None
    if state in (FiguresState.DRAFT, FiguresState.VOID):
        return engine.invoice_status(current_status=state, amount_cents=0, paid_cents=0, due_date=due_date, today=today)
    amount, paid = _MONEY_OF_STATE[state]
    return engine.invoice_status(
        current_status=engine.ISSUED, amount_cents=amount, paid_cents=paid, due_date=due_date, today=today
    )


def status_condition(status: str, *, today: date, due_field: str) -> Q:
    """The rows (of `InvoiceFigures` or `InvoiceRollup`) whose status today is `status`.

    The engine reads the due date only as "before today or not" (no due date is "not"), so asking it
    for each state with a due date of yesterday and of today says which due dates give `status`."""
    condition = Q(pk__in=[])
    not_past = Q(**{f"{due_field}__gte": today}) | Q(**{f"{due_field}__isnull": True})
    for state in FiguresState.values:
        when_past = status_of_state(state, today - timedelta(days=1), today) == status
        when_not_past = status_of_state(state, today, today) == status
        assert when_not_past == (status_of_state(state, None, today) == status), "no due date must read as not due"
        if when_past and when_not_past:
            condition |= Q(state=state)
        elif when_past:
            condition |= Q(state=state) & Q(**{f"{due_field}__lt": today})
        elif when_not_past:
            condition |= Q(state=state) & not_past
    return condition


def rollup_rows(*, tenant: Tenant | None, first_day: date | None, last_day: date | None) -> QuerySet:
    """The rollup added up per (currency, state, due day) over the invoices issued in the days given;
    over all time, the rollup by due day alone (a few hundred rows per tenant)."""
    if first_day is None and last_day is None:
        rows = InvoiceDueRollup.objects.all()
    else:
        rows = InvoiceRollup.objects.all()
        if first_day is not None:
            rows = rows.filter(issue_day__gte=first_day)
        if last_day is not None:
            rows = rows.filter(issue_day__lte=last_day)
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    return (
        rows.values("currency", "state", "due_day")
        .annotate(invoice_count=Sum("invoice_count"), amount=Sum("amount_cents"), paid=Sum("paid_cents"))
        .filter(invoice_count__gt=0)
        .order_by()
    )


def tenant_invoice_count(*, tenant: Tenant, status: str | None = None, today: date) -> int:
    rows = InvoiceDueRollup.objects.filter(tenant=tenant)
    if status is not None:
        rows = rows.filter(status_condition(status, today=today, due_field="due_day"))
    return rows.aggregate(total=Sum("invoice_count"))["total"] or 0


def tenant_invoice_ids(*, tenant: Tenant, status: str, today: date) -> QuerySet:
    """Ids of the tenant's invoices whose status today is `status`, newest first."""
    return (
        InvoiceFigures.objects.filter(tenant=tenant)
        .filter(status_condition(status, today=today, due_field="due_date"))
        .order_by("-invoice_id")
        .values_list("invoice_id", flat=True)
    )


_BLOCK_OF_OFFSET_SQL = f"""
SELECT block, passed - invoice_count
FROM (
    SELECT block, invoice_count, sum(invoice_count) OVER (ORDER BY block DESC) AS passed
    FROM {InvoiceBlock._meta.db_table}
    WHERE tenant_id = %s AND invoice_count > 0
) blocks
WHERE passed > %s
ORDER BY block DESC
LIMIT 1"""


def tenant_page_ids(*, tenant: Tenant, offset: int, page_size: int) -> QuerySet | list:
    """Ids of one page of the tenant's invoices, newest first, at the same cost on any page: the
    per-block counts say which block of 1,024 ids holds the page's first row and how many of the
    tenant's invoices come before that block; the (tenant_id, id) index then skips fewer than 1,024."""
    connection = connections[InvoiceBlock.objects.db]
    with connection.cursor() as cursor:
        cursor.execute(_BLOCK_OF_OFFSET_SQL, [tenant.pk, offset])
        found = cursor.fetchone()
    if found is None:
        return []
    block, before = found
    skip = offset - before
    below = (block + 1) << INVOICE_BLOCK_BITS
    return Invoice.objects.filter(tenant=tenant, id__lt=below).order_by("-id").values("id")[skip: skip + page_size]
