"""All the checks on one snapshot: what `pay10_verify` runs."""
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

from django.db import connection, transaction

from billing.models import Tenant
from payments.selectors.verification.audit import check_audit_trail
from payments.selectors.verification.baseline import baseline_checks
from payments.selectors.verification.conservation import (
    check_backfill_conservation,
    check_currency_mismatch_payments,
    check_migration_complete,
)
from payments.selectors.verification.money import (
    check_credits_within_amount,
    check_invoices_within_amount,
    check_payments_within_amount,
)
from payments.selectors.verification.orphans import check_no_orphans
from payments.selectors.verification.read_model import check_read_model, check_tenant_balances
from payments.selectors.verification.result import CheckResult
from payments.selectors.verification.statuses import check_stored_statuses
from payments.services.statistics import VERIFY_TABLES, analyze


def invariant_checks(*, tenant: Tenant | None = None, today: date, allow_partial: bool = False) -> list[CheckResult]:
    """Every SPEC.md money invariant, in SPEC.md's order, then migration progress."""
    return [
        check_payments_within_amount(tenant=tenant),
        check_credits_within_amount(tenant=tenant),
        check_invoices_within_amount(tenant=tenant),
        check_no_orphans(tenant=tenant),
        check_stored_statuses(tenant=tenant, today=today),
        check_audit_trail(tenant=tenant),
        check_backfill_conservation(tenant=tenant),
        check_currency_mismatch_payments(tenant=tenant),
        check_migration_complete(tenant=tenant, allow_partial=allow_partial),
        check_read_model(tenant=tenant),
        check_tenant_balances(tenant=tenant),
    ]


@contextmanager
def one_snapshot() -> Iterator[None]:
    """Every check reads the same committed state while the app keeps writing: on PostgreSQL one
    REPEATABLE READ, READ ONLY transaction (SQLite would block writers instead, so it reads as is)."""
    starts_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if starts_transaction and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def verification_run(
    *, tenant: Tenant | None, today: date, allow_partial: bool = False, baseline: dict | None = None,
    current_document: Callable[..., dict] | None = None,
) -> list[CheckResult]:
    """Every invariant check, then the baseline comparison if there is a baseline, on one snapshot.
    The baseline comparison needs today's document computed on that snapshot: `current_document`
    (`billing.selectors.baseline.baseline_document`, passed in by the caller so that payments'
    selectors never import billing's) is called with `tenant` and `today` = the baseline's `asOf`.
    First, the tables it reads whose planner statistics are missing or stale are ANALYZEd (right after
    a backfill they may never have been): the checks' plans must not depend on autovacuum's timing."""
    if baseline is not None and current_document is None:
        raise ValueError("a baseline comparison needs current_document (billing.selectors.baseline.baseline_document)")
    analyze(VERIFY_TABLES, only_stale=True)
    with one_snapshot():
        checks = invariant_checks(tenant=tenant, today=today, allow_partial=allow_partial)
        if baseline is not None:
            current = current_document(tenant=tenant, today=date.fromisoformat(baseline["asOf"]))
            checks += baseline_checks(baseline=baseline, current=current, tenant=tenant)
    return checks
