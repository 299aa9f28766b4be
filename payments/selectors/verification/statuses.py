"""Invariant 5: every migrated invoice's stored status is the status engine's verdict for today
(read through `invoices_with_balances_grouped`, the same definition FIN-01/FIN-02 show)."""
from datetime import date

from django.db.models import F, QuerySet

from billing.models import Invoice, Tenant
from payments.domain import status as engine
from payments.selectors.balances import invoices_with_balances_grouped
from payments.selectors.verification.messages import STATUSES_OK, STATUSES_STALE_BY_DATE, STATUSES_WRONG
from payments.selectors.verification.result import CheckResult, check_result, examples_of


def stale_invoice_statuses(*, tenant: Tenant | None = None, today: date | None = None) -> QuerySet[Invoice]:
    """Migrated invoices whose stored status is not the engine's verdict for `today`."""
    return (
        invoices_with_balances_grouped(tenant=tenant, today=today)
        .filter(is_migrated=True)
        .exclude(status=F("status_today"))
    )


def check_stored_statuses(*, tenant: Tenant | None = None, today: date) -> CheckResult:
    stale = stale_invoice_statuses(tenant=tenant, today=today)
    count = stale.count()
    by_date = (
        stale.filter(status__in=[engine.ISSUED, engine.PARTIALLY_PAID], status_today=engine.OVERDUE).count() if count else 0
    )
    return check_result(
        "stored_status_matches_engine", count=count, ok_text=STATUSES_OK,
        failed_text=STATUSES_STALE_BY_DATE if by_date == count else STATUSES_WRONG,
        examples=examples_of(stale, "id", "tenant_id", "number", "status", "status_today", "amount_cents", "paid_cents", "due_date")
        if count
        else [],
        today=today, by_date=by_date,
    )
