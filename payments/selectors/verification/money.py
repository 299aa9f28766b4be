"""Invariants 1-3: no payment, credit or invoice holds more money than its amount.

The multi-row sums are hash aggregates over whole tables (GROUP BY, anti-joins), one pass each,
rather than a correlated subquery per row: linear at millions of rows. Payments' and credits' uses
are the SQL rules of `payments.database.rules` (`PAYMENT_USES`, `CREDIT_USES`); invoices' paid and
pending are the balance selectors' `PAID_ALLOCATION`/`PENDING_ALLOCATION`.
"""
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce

from billing.models import Tenant
from payments.database import rules
from payments.models import Allocation
from payments.selectors.balances import ACTIVE_ALLOCATION, PAID_ALLOCATION, PENDING_ALLOCATION, ZERO
from payments.selectors.verification.messages import (
    CREDITS_OK,
    CREDITS_OVER_APPLIED,
    INVOICES_OK,
    INVOICES_OVER_APPLIED,
    PAYMENTS_OK,
    PAYMENTS_OVER_APPLIED,
)
from payments.selectors.verification.result import CheckResult, MAX_EXAMPLES, check_result, raw_violations, scoped, tenant_sql

# Invariant 1 ------------------------------------------------------------------------------------
PAYMENT_COLUMNS = ("id", "tenant_id", "amount_cents", "allocated_cents", "credited_cents", "refunded_cents", "unallocated_cents")
_PAYMENTS_OVER_SQL = f"""
SELECT p.id, p.tenant_id, p.amount_cents, used.allocated, used.credited, used.refunded,
       p.amount_cents - used.allocated - used.credited - used.refunded
FROM (
    SELECT payment_id, CAST(SUM(allocated) AS BIGINT) AS allocated, CAST(SUM(credited) AS BIGINT) AS credited,
           CAST(SUM(refunded) AS BIGINT) AS refunded
    FROM (
        {rules.PAYMENT_USES}
    ) uses
    GROUP BY payment_id
) used
JOIN payments_payment p ON p.id = used.payment_id
WHERE used.allocated + used.credited + used.refunded > p.amount_cents"""


def check_payments_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    where, params = tenant_sql(tenant, "p.tenant_id")
    count, examples = raw_violations(_PAYMENTS_OVER_SQL + where, params, PAYMENT_COLUMNS)
    return check_result(
        "payments_within_amount", count=count, ok_text=PAYMENTS_OK, failed_text=PAYMENTS_OVER_APPLIED, examples=examples
    )


# Invariant 2 ------------------------------------------------------------------------------------
CREDIT_COLUMNS = ("id", "tenant_id", "amount_cents", "applied_cents", "refunded_cents", "remaining_cents")
_CREDITS_OVER_SQL = f"""
SELECT c.id, c.tenant_id, c.amount_cents, used.applied, used.refunded, c.amount_cents - used.applied - used.refunded
FROM (
    SELECT credit_id, CAST(SUM(applied) AS BIGINT) AS applied, CAST(SUM(refunded) AS BIGINT) AS refunded
    FROM (
        {rules.CREDIT_USES}
    ) uses
    GROUP BY credit_id
) used
JOIN payments_credit c ON c.id = used.credit_id
WHERE used.applied + used.refunded > c.amount_cents"""


def check_credits_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    where, params = tenant_sql(tenant, "c.tenant_id")
    count, examples = raw_violations(_CREDITS_OVER_SQL + where, params, CREDIT_COLUMNS)
    return check_result(
        "credits_within_amount", count=count, ok_text=CREDITS_OK, failed_text=CREDITS_OVER_APPLIED, examples=examples
    )


# Invariant 3 ------------------------------------------------------------------------------------
def over_applied_invoices(*, tenant: Tenant | None = None) -> QuerySet:
    """Migrated invoices whose active allocations (paid + pending) exceed their amount, one row per
    invoice, grouped over the allocations (the same paid/pending definitions as the balance helpers)."""
    return (
        scoped(Allocation.objects.filter(ACTIVE_ALLOCATION, invoice__pay10_migration__isnull=False), tenant, "invoice__tenant")
        .values("invoice_id", "invoice__tenant_id", "invoice__number", "invoice__amount_cents")
        .annotate(
            paid_cents=Coalesce(Sum("amount_cents", filter=PAID_ALLOCATION), ZERO),
            pending_cents=Coalesce(Sum("amount_cents", filter=PENDING_ALLOCATION), ZERO),
        )
        .annotate(balance_cents=F("invoice__amount_cents") - F("paid_cents") - F("pending_cents"))
        .filter(balance_cents__lt=0)
    )


def check_invoices_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    over = over_applied_invoices(tenant=tenant)
    count = over.count()
    over_paid = over.filter(paid_cents__gt=F("invoice__amount_cents")).count() if count else 0
    examples = [
        {"id": row["invoice_id"], "tenant_id": row["invoice__tenant_id"], "number": row["invoice__number"],
         "amount_cents": row["invoice__amount_cents"], "paid_cents": row["paid_cents"],
         "pending_cents": row["pending_cents"], "balance_cents": row["balance_cents"]}
        for row in (over.order_by("invoice_id")[:MAX_EXAMPLES] if count else [])
    ]
    return check_result(
        "invoices_within_amount", count=count, ok_text=INVOICES_OK, failed_text=INVOICES_OVER_APPLIED,
        examples=examples, over_paid=over_paid,
    )
