"""The baseline comparison of `pay10_verify --baseline`: today's documents against the ones
`pay10_baseline` wrote before the migration.

The documents themselves (FIN-01, FIN-02, counts by status) are billing's (`billing.selectors.baseline`,
built on payments' selectors); this module receives today's document as data (`current`), so payments'
selectors never import billing's."""
from collections import defaultdict
from datetime import date

from django.db.models import Count, Exists, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

from billing.models import Tenant
from payments.models import BackfillDeviation, InvoiceMigration
from payments.selectors.balances import credits_with_balances, invoices_with_balances
from payments.selectors.verification.messages import (
    CREDIT_DIFFERENT,
    CREDIT_OK,
    FIN01_DIFFERENT,
    FIN01_EXACT_FIELDS,
    FIN01_OK,
    FIN02_DIFFERENT,
    FIN02_OK,
    STATUS_COUNTS_DIFFERENT,
    STATUS_COUNTS_OK,
)
from payments.selectors.verification.result import CheckResult, check_result, examples_of, scoped


def _differences(before, after, path: str) -> list[dict]:
    """Leaf-by-leaf differences between two JSON values (a missing number counts as 0)."""
    if isinstance(before, dict) or isinstance(after, dict):
        before, after = before or {}, after or {}
        found = []
        for key in sorted(set(before) | set(after)):
            found += _differences(before.get(key), after.get(key), f"{path}.{key}")
        return found
    if (before or 0) != (after or 0):
        return [{"field": path, "before": before or 0, "after": after or 0}]
    return []


def compare_fin01_totals(*, baseline: dict, current: dict) -> CheckResult:
    as_of = baseline["asOf"]
    differences = []
    currencies = sorted(set(baseline["fin01"]["currencies"]) | set(current["fin01"]["currencies"]))
    for currency in currencies:
        before = baseline["fin01"]["currencies"].get(currency, {})
        after = current["fin01"]["currencies"].get(currency, {})
        for name in FIN01_EXACT_FIELDS:
            differences += _differences(before.get(name), after.get(name), f"{currency}.{name}")
    count = len(differences)
    return check_result(
        "baseline_fin01_totals", count=count, ok_text=FIN01_OK, failed_text=FIN01_DIFFERENT, examples=differences,
        as_of=as_of,
    )


CREDIT_DEVIATION_KINDS = (
    BackfillDeviation.Kind.CROSS_TENANT_LINK,
    BackfillDeviation.Kind.OVERPAYMENT_TO_CREDIT,
    BackfillDeviation.Kind.UNLINKED_PAYMENT_TO_CREDIT,
    BackfillDeviation.Kind.UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT,
)


def backfilled_credit_by_reason(*, tenant: Tenant | None = None) -> list[dict]:
    """The backfill's credits summed per currency and case: the deviation the backfill recorded for
    the credit's source payment (its free-text reason names single invoices), else the reason."""
    case = Subquery(
        BackfillDeviation.objects.filter(payment_id=OuterRef("source_payment_id"), kind__in=CREDIT_DEVIATION_KINDS)
        .order_by("kind")
        .values("kind")[:1]
    )
    rows = (
        credits_with_balances(tenant=tenant).filter(backfilled=True)
        .annotate(case=Coalesce(case, F("reason")))
        .values("currency", "case")
        .annotate(credits=Count("pk"), amount=Sum("amount_cents"), remaining=Sum("remaining_cents"))
        .order_by("currency", "case")
    )
    return [
        {"currency": row["currency"], "reason": row["case"], "credits": row["credits"], "amountCents": row["amount"],
         "remainingCents": row["remaining"]}
        for row in rows
    ]


def compare_unapplied_credit(*, baseline: dict, current: dict, tenant: Tenant | None) -> CheckResult:
    """Unapplied credit may grow only by what the backfill's credits still hold beyond what they held at the baseline."""
    differences = []
    currencies = sorted(set(baseline["fin01"]["currencies"]) | set(current["fin01"]["currencies"]))
    for currency in currencies:
        before = baseline["fin01"]["currencies"].get(currency, {}).get("unappliedCreditCents", 0)
        after = current["fin01"]["currencies"].get(currency, {}).get("unappliedCreditCents", 0)
        backfilled = current["backfilledCreditRemaining"].get(currency, 0) - baseline.get("backfilledCreditRemaining", {}).get(currency, 0)
        if after - before != backfilled:
            differences.append(
                {"currency": currency, "before": before, "after": after, "backfillCreditCents": backfilled,
                 "unexplainedCents": after - before - backfilled}
            )
    by_reason = backfilled_credit_by_reason(tenant=tenant)
    reasons = "".join(
        f"; {row['currency']} {row['remainingCents']} unapplied of {row['amountCents']} in {row['credits']} credit(s): {row['reason']}"
        for row in by_reason
    )
    count = len(differences)
    return check_result(
        "baseline_unapplied_credit", count=count, ok_text=CREDIT_OK, failed_text=CREDIT_DIFFERENT,
        examples=differences + [{"kind": "backfill credit", **row} for row in by_reason], by_reason=reasons,
    )


def compare_status_counts(*, baseline: dict, current: dict, tenant: Tenant | None) -> CheckResult:
    """Stored count/amount by status may differ from the baseline only by the status changes the
    backfill recorded as STATUS_CHANGED deviations since the baseline was taken."""
    moved_then = baseline.get("backfillStatusChanges", {})
    moved_now = current["backfillStatusChanges"]
    differences = []
    moved = 0
    for tenant_id in sorted(set(baseline["invoicesByStatus"]) | set(current["invoicesByStatus"])):
        expected: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "amountCents": 0})
        for status, figures in baseline["invoicesByStatus"].get(tenant_id, {}).items():
            expected[status] = dict(figures)
        changes_now = moved_now.get(tenant_id, {})
        changes_then = moved_then.get(tenant_id, {})
        for change in set(changes_now) | set(changes_then):
            old, new = change.split("->")
            empty = {"count": 0, "amountCents": 0}
            now, then = changes_now.get(change, empty), changes_then.get(change, empty)
            for key in ("count", "amountCents"):
                delta = now[key] - then[key]
                expected[old][key] -= delta
                expected[new][key] += delta
            moved += now["count"] - then["count"]
        differences += [
            {"tenant": tenant_id, **difference}
            for difference in _differences(
                {status: figures for status, figures in expected.items() if figures["count"] or figures["amountCents"]},
                current["invoicesByStatus"].get(tenant_id, {}),
                "byStoredStatus",
            )
        ]
    unexplained = scoped(InvoiceMigration.objects.all(), tenant, "invoice__tenant").exclude(
        legacy_status=F("invoice__status")
    ).exclude(
        Exists(BackfillDeviation.objects.filter(invoice_id=OuterRef("invoice_id"), kind=BackfillDeviation.Kind.STATUS_CHANGED))
    )
    unexplained_count = unexplained.count()
    examples = differences + [
        {"kind": "status change without deviation", **row}
        for row in (
            examples_of(unexplained, "invoice_id", "invoice__number", "legacy_status", "invoice__status")
            if unexplained_count
            else []
        )
    ]
    count = len(differences) + unexplained_count
    return check_result(
        "baseline_status_counts", count=count, ok_text=STATUS_COUNTS_OK, failed_text=STATUS_COUNTS_DIFFERENT,
        examples=examples, unexplained=unexplained_count, moved=moved,
    )


def compare_fin02_rows(*, baseline: dict, today: date) -> CheckResult:
    """Baseline FIN-02 page-1 rows, found again by invoice number: paid and balance equal; a status
    difference only where the backfill recorded a STATUS_CHANGED deviation for the invoice."""
    differences = []
    rows_compared = 0
    for tenant_id, page in sorted(baseline["fin02"].items()):
        by_number = {row["number"]: row for row in page["results"]}
        rows_compared += len(by_number)
        current = {
            row["number"]: row
            for row in invoices_with_balances(today=today)
            .filter(tenant_id=tenant_id, number__in=list(by_number))
            .annotate(
                status_change_recorded=Exists(
                    BackfillDeviation.objects.filter(invoice_id=OuterRef("pk"), kind=BackfillDeviation.Kind.STATUS_CHANGED)
                )
            )
            .values("number", "paid_cents", "balance_cents", "status_today", "status_change_recorded")
        }
        for number, before in by_number.items():
            after = current.get(number)
            if after is None:
                differences.append({"tenant": tenant_id, "number": number, "problem": "invoice no longer exists"})
                continue
            problems = []
            if before["paidCents"] != after["paid_cents"]:
                problems.append(f"paid {before['paidCents']} -> {after['paid_cents']}")
            if before["balanceCents"] != after["balance_cents"]:
                problems.append(f"balance {before['balanceCents']} -> {after['balance_cents']}")
            if before["status"] != after["status_today"] and not after["status_change_recorded"]:
                problems.append(f"status {before['status']} -> {after['status_today']} without a STATUS_CHANGED deviation")
            if problems:
                differences.append({"tenant": tenant_id, "number": number, "problem": "; ".join(problems)})
    count = len(differences)
    return check_result(
        "baseline_fin02_rows", count=count, ok_text=FIN02_OK, failed_text=FIN02_DIFFERENT, examples=differences,
        rows=rows_compared,
    )



def baseline_checks(*, baseline: dict, current: dict, tenant: Tenant | None) -> list[CheckResult]:
    """Compare today's figures (`current`: the baseline document computed for the baseline's `asOf`
    day, `billing.selectors.baseline.baseline_document`) with the baseline's."""
    as_of = date.fromisoformat(baseline["asOf"])
    return [
        compare_fin01_totals(baseline=baseline, current=current),
        compare_unapplied_credit(baseline=baseline, current=current, tenant=tenant),
        compare_status_counts(baseline=baseline, current=current, tenant=tenant),
        compare_fin02_rows(baseline=baseline, today=as_of),
    ]
