"""FIN-01 (finance summary) and FIN-02 (a tenant's invoice page): the documents the finance API
serves and `pay10_baseline` records, with the API's camelCase keys.

Both read the invoice figures of `payments.selectors.balances` (`invoices_with_balances_grouped`,
the set-based shape of `invoices_with_balances`, same values), so an invoice the backfill has not
reached yet counts with its legacy paid figure and every status shown is the engine's verdict for
today, never a stale stored one. Totals are therefore identical before, during and after the
backfill.

Which date each figure follows (docs/api.md repeats this):
- invoice figures (invoiced, collected, outstanding, overdue, by status, aging) follow the invoice's
  issue date (`issued_at`, else `created_at`);
- pending verification follows the payment's `received_at`;
- unapplied credit is what credits hold now, whatever the period.
Figures are per currency and never add two currencies together.

Cost at scale (bench/, docs/benchmarks.md): on PostgreSQL both read the read model that the
database keeps at every commit (`payments.selectors.figures`). FIN-01 adds up the rollup rows of the
period (per issue and due day; over all time, per due day alone: a few hundred rows per tenant,
whatever the number of invoices); pending verification over all time and unapplied credit come from
the tenant balances (`tenant_balances`: 16 slot rows per tenant and currency), and a dated period's
pending figure from the index of pending payments. FIN-02 takes its count from the rollup by due day, finds the
page's first id through the per-block invoice counts and skips fewer than 1,024 entries of the
(tenant_id, id) index, so any page costs the same (with a status, it pages the figures' (tenant,
state, invoice) index instead, from the nearer end: a status page skips up to half the matching
entries, so its cost still grows with the page's distance from either end), then reads the page's figures rows. Without the read model (SQLite,
a build in progress, `PAY10_READ_MODEL=false`) they compute live: FIN-01 through the set-based shape
`invoices_with_balances_grouped`, FIN-02 computing the figures only for the page's rows, or, with a
status filter, for every invoice of the tenant. Both ways give the same documents.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connections
from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When, Window
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Invoice, Tenant
from payments.domain import status as engine
from payments.domain.aging import aging_bucket
from payments.models import LegacyPaymentStatus, Payment
from payments.selectors.balances import PENDING_VERIFICATION, invoices_with_balances_grouped, unapplied_credit_by_currency
from payments.selectors.figures import (
    balances_ready,
    figures_ready,
    rollup_rows,
    status_of_state,
    tenant_balances,
    tenant_invoice_count,
    tenant_invoice_ids,
    tenant_page_ids,
)
from payments.selectors.schema import pay10_schema_installed


class Period:
    ALL_TIME = "ALL_TIME"
    THIS_MONTH = "THIS_MONTH"
    LAST_MONTH = "LAST_MONTH"
    THIS_QUARTER = "THIS_QUARTER"
    THIS_YEAR = "THIS_YEAR"
    LAST_30_DAYS = "LAST_30_DAYS"
    CUSTOM = "CUSTOM"

    NAMED = (ALL_TIME, THIS_MONTH, LAST_MONTH, THIS_QUARTER, THIS_YEAR, LAST_30_DAYS)


AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
BILLED_STATUSES = (engine.ISSUED, engine.PARTIALLY_PAID, engine.PAID, engine.OVERDUE)

FIN02_MAX_PAGE_SIZE = 200
FIN02_FIELDS = (
    "id", "number", "status_today", "amount_cents", "paid_cents", "pending_cents", "balance_cents",
    "currency", "issued_at", "due_date", "paid_at",
)


@dataclass(frozen=True)
class DateRange:
    """Inclusive first and last day; None on either side means open."""

    first: date | None
    last: date | None


def period_range(*, period: str, today: date, date_from: date | None = None, date_to: date | None = None) -> DateRange:
    if period == Period.ALL_TIME:
        return DateRange(None, None)
    if period == Period.CUSTOM:
        return DateRange(date_from, date_to)
    if period == Period.THIS_MONTH:
        return DateRange(today.replace(day=1), today)
    if period == Period.LAST_MONTH:
        last = today.replace(day=1) - timedelta(days=1)
        return DateRange(last.replace(day=1), last)
    if period == Period.THIS_QUARTER:
        first_month = 3 * ((today.month - 1) // 3) + 1
        return DateRange(date(today.year, first_month, 1), today)
    if period == Period.THIS_YEAR:
        return DateRange(date(today.year, 1, 1), today)
    if period == Period.LAST_30_DAYS:
        return DateRange(today - timedelta(days=29), today)
    raise ValueError(f"unknown period {period!r}")


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _time_filter(field: str, date_range: DateRange) -> Q:
    condition = Q()
    if date_range.first is not None:
        condition &= Q(**{f"{field}__gte": _start_of(date_range.first)})
    if date_range.last is not None:
        condition &= Q(**{f"{field}__lt": _start_of(date_range.last + timedelta(days=1))})
    return condition


def _aging_bucket_expression(today: date) -> Case:
    return Case(
        When(Q(due_date__isnull=True) | Q(due_date__gte=today), then=Value("current")),
        When(due_date__gte=today - timedelta(days=30), then=Value("1-30")),
        When(due_date__gte=today - timedelta(days=60), then=Value("31-60")),
        When(due_date__gte=today - timedelta(days=90), then=Value("61-90")),
        default=Value("90+"),
    )


def _empty_currency_summary() -> dict:
    return {
        "invoicedCents": 0,
        "collectedCents": 0,
        "outstandingCents": 0,
        "overdueCents": 0,
        "pendingVerificationCents": 0,
        "unappliedCreditCents": 0,
        "byStatus": {status: {"count": 0, "amountCents": 0} for status in engine.ALL_STATUSES},
        "aging": {bucket: 0 for bucket in AGING_BUCKETS},
    }


def _invoice_totals(invoices: QuerySet) -> list[dict]:
    """Invoice count, amount and paid per (currency, today's status, aging bucket), added up in the database.

    The per-invoice figures come from a GROUP BY per invoice, and SQL cannot group that result again
    in the same SELECT, so it is wrapped as a derived table; the inner SQL is Django's own, so every
    figure keeps its one definition.
    """
    columns = ("currency", "status_today", "aging_bucket")
    inner_sql, params = invoices.values(*columns, "amount_cents", "paid_cents").order_by().query.sql_with_params()
    connection = connections[invoices.db]
    quoted = {name: connection.ops.quote_name(name) for name in (*columns, "amount_cents", "paid_cents")}
    keys = ", ".join(quoted[name] for name in columns)
    sql = (
        f"SELECT {keys}, COUNT(*), SUM({quoted['amount_cents']}), SUM({quoted['paid_cents']}) "
        f"FROM ({inner_sql}) invoice_balances GROUP BY {keys}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            {
                "currency": currency,
                "status_today": status,
                "aging_bucket": bucket,
                "invoice_count": int(count),
                "amount": int(amount),
                "paid": int(paid),
            }
            for currency, status, bucket, count, amount, paid in cursor.fetchall()
        ]


def _invoice_totals_of_period(*, tenant: Tenant | None, date_range: DateRange, today: date) -> list[dict]:
    """`_invoice_totals` of the invoices issued in the period: from the rollup when it is ready
    (a few thousand rows), else computed live from every invoice."""
    if not figures_ready():
        invoices = (
            invoices_with_balances_grouped(tenant=tenant, today=today)
            .alias(issue_time=Coalesce("issued_at", "created_at"))
            .filter(_time_filter("issue_time", date_range))
            .annotate(aging_bucket=_aging_bucket_expression(today))
        )
        return _invoice_totals(invoices)
    totals: dict[tuple, dict] = {}
    for row in rollup_rows(tenant=tenant, first_day=date_range.first, last_day=date_range.last):
        status = status_of_state(row["state"], row["due_day"], today)
        key = (row["currency"], status, aging_bucket(row["due_day"], today))
        total = totals.setdefault(
            key, {"currency": key[0], "status_today": status, "aging_bucket": key[2], "invoice_count": 0, "amount": 0, "paid": 0}
        )
        total["invoice_count"] += row["invoice_count"]
        total["amount"] += row["amount"]
        total["paid"] += row["paid"]
    return list(totals.values())


def _pending_verification(*, tenant: Tenant | None, date_range: DateRange) -> dict[str, int]:
    """Money of the payments awaiting verification received in the period, per currency, computed live
    (the SQL twin over all time is `rules.PENDING_VERIFICATION`, kept in `TenantBalance`)."""
    payments = Payment.objects.filter(tenant=tenant) if tenant is not None else Payment.objects.all()
    # Before the PAY-10 schema there is only the legacy status.
    is_pending = PENDING_VERIFICATION if pay10_schema_installed() else Q(status=LegacyPaymentStatus.PENDING)
    pending = payments.filter(is_pending, _time_filter("received_at", date_range))
    return {row["currency"]: row["total"] for row in pending.values("currency").annotate(total=Sum("amount_cents")).order_by()}


def finance_summary(
    *,
    tenant: Tenant | None,
    period: str,
    today: date | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict:
    """FIN-01: the finance summary, per currency, for one tenant or all of them."""
    today = today or timezone.localdate()
    date_range = period_range(period=period, today=today, date_from=date_from, date_to=date_to)
    summary: dict[str, dict] = {}

    def currency_summary(currency: str) -> dict:
        return summary.setdefault(currency, _empty_currency_summary())

    for row in _invoice_totals_of_period(tenant=tenant, date_range=date_range, today=today):
        figures = currency_summary(row["currency"])
        status = row["status_today"]
        by_status = figures["byStatus"][status]
        by_status["count"] += row["invoice_count"]
        by_status["amountCents"] += row["amount"]
        if status not in BILLED_STATUSES:
            continue
        outstanding = row["amount"] - row["paid"]
        figures["invoicedCents"] += row["amount"]
        figures["collectedCents"] += row["paid"]
        figures["outstandingCents"] += outstanding
        figures["aging"][row["aging_bucket"]] += outstanding
        if status == engine.OVERDUE:
            figures["overdueCents"] += outstanding

    balances = tenant_balances(tenant=tenant) if balances_ready() else None
    if balances is not None and date_range == DateRange(None, None):
        for currency, held in balances.items():
            if held["pending"]:
                currency_summary(currency)["pendingVerificationCents"] += held["pending"]
    else:
        for currency, total in _pending_verification(tenant=tenant, date_range=date_range).items():
            currency_summary(currency)["pendingVerificationCents"] += total

    if balances is not None:
        credit = {currency: held["credit"] for currency, held in balances.items()}
    elif pay10_schema_installed():
        credit = unapplied_credit_by_currency(tenant=tenant)
    else:
        credit = {}
    for currency, total in credit.items():
        if total:
            currency_summary(currency)["unappliedCreditCents"] += total

    return {
        "period": period,
        "from": date_range.first.isoformat() if date_range.first else None,
        "to": date_range.last.isoformat() if date_range.last else None,
        "tenant": tenant.pk if tenant is not None else None,
        "asOf": today.isoformat(),
        "currencies": {currency: summary[currency] for currency in sorted(summary)},
    }


def invoice_page(*, tenant: Tenant, page: int, page_size: int, status: str | None = None, today: date | None = None) -> dict:
    """FIN-02: one page of a tenant's invoices, newest first, with paid/pending/balance and today's status."""
    if page < 1 or not 1 <= page_size <= FIN02_MAX_PAGE_SIZE:
        raise ValueError("page must be >= 1 and page_size within 1..200")
    offset = (page - 1) * page_size
    today = today or timezone.localdate()
    if figures_ready():
        rows, count = _page_from_figures(tenant=tenant, offset=offset, page_size=page_size, status=status, today=today)
    else:
        rows, count = _page_live(tenant=tenant, offset=offset, page_size=page_size, status=status, today=today)
    return {
        "count": count,
        "page": page,
        "pageSize": page_size,
        "results": [
            {
                "id": row["id"],
                "number": row["number"],
                "status": row["status_today"],
                "amountCents": row["amount_cents"],
                "paidCents": row["paid_cents"],
                "pendingCents": row["pending_cents"],
                "balanceCents": row["balance_cents"],
                "currency": row["currency"],
                "issuedAt": row["issued_at"].isoformat() if row["issued_at"] else None,
                "dueDate": row["due_date"].isoformat() if row["due_date"] else None,
                "paidAt": row["paid_at"].isoformat() if row["paid_at"] else None,
            }
            for row in rows
        ],
    }



def _newest_first_ids(*, tenant: Tenant, count: int, offset: int, page_size: int) -> QuerySet | list:
    """One page of the tenant's invoice ids, newest first, paged on the (tenant_id, id) index from the
    nearer end (a deep page skips at most half the tenant's entries)."""
    rows_left = count - offset
    if rows_left <= 0:
        return []
    tenant_invoices = Invoice.objects.filter(tenant=tenant)
    if offset * 2 <= count:
        return tenant_invoices.order_by("-id").values("id")[offset: offset + page_size]
    return tenant_invoices.order_by("id").values("id")[max(rows_left - page_size, 0): rows_left]


def _nearer_end(ids_newest_first: QuerySet, *, count: int, offset: int, page_size: int) -> list:
    """One page of `ids_newest_first` (`count` of them), skipped from the nearer end: a page past the
    middle is read oldest first, so a deep page skips at most half the matching index entries."""
    rows_left = count - offset
    if rows_left <= 0:
        return []
    if offset * 2 <= count:
        return list(ids_newest_first[offset: offset + page_size])
    return list(ids_newest_first.reverse()[max(rows_left - page_size, 0): rows_left])


def _page_from_figures(*, tenant: Tenant, offset: int, page_size: int, status: str | None, today: date) -> tuple[list, int]:
    """The page from the read model: the count from the rollup, the page's ids from the per-block
    counts and the (tenant_id, id) index or, with a status, from the figures' (tenant, state, invoice)
    index, then the page's rows."""
    count = tenant_invoice_count(tenant=tenant, status=status, today=today)
    if status is None:
        page_ids = tenant_page_ids(tenant=tenant, offset=offset, page_size=page_size) if offset < count else []
    else:
        page_ids = _nearer_end(tenant_invoice_ids(tenant=tenant, status=status, today=today), count=count, offset=offset,
                               page_size=page_size)
    rows = list(
        Invoice.objects.filter(pk__in=page_ids)
        .order_by("-id")
        .values(
            "id", "number", "amount_cents", "currency", "issued_at", "due_date", "paid_at",
            state=F("figures__state"), paid_cents=F("figures__paid_cents"), pending_cents=F("figures__pending_cents"),
        )
    )
    for row in rows:
        row["status_today"] = status_of_state(row["state"], row["due_date"], today)
        row["balance_cents"] = row["amount_cents"] - row["paid_cents"] - row["pending_cents"]
    return rows, count


def _page_live(*, tenant: Tenant, offset: int, page_size: int, status: str | None, today: date) -> tuple[list, int]:
    """The page computed from the allocations (no read model on this database, or it is being built)."""
    if status is None:
        # Count on the (tenant_id, id) index, then compute the figures for the page's rows only.
        count = Invoice.objects.filter(tenant=tenant).count()
        page_ids = _newest_first_ids(tenant=tenant, count=count, offset=offset, page_size=page_size)
        # The set-based shape again: over 50 rows it is nested index probes, and it compiles to far
        # less SQL than the per-row shape (whose subqueries repeat inside every figure).
        invoices = invoices_with_balances_grouped(tenant=tenant, today=today).filter(pk__in=page_ids)
        return list(invoices.order_by("-id").values(*FIN02_FIELDS)), count
    # Today's status needs every invoice's money: the set-based shape, filtered on the verdict,
    # with the number of matches counted in the same pass (a window over the filtered rows).
    invoices = invoices_with_balances_grouped(tenant=tenant, today=today).filter(status_today=status)
    rows = list(
        invoices.annotate(matching=Window(Count("*"))).order_by("-id").values(*FIN02_FIELDS, "matching")[offset: offset + page_size]
    )
    if rows:
        return rows, rows[0]["matching"]
    return rows, (invoices.count() if offset else 0)
