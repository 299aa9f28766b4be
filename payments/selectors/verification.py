"""`pay10_verify`'s checks: every money invariant of SPEC.md as set-based SQL.

Each check is one or a few aggregate queries (ORM subqueries, or one raw LEFT JOIN for orphans)
whose cost grows with the table sizes, never a Python loop over rows; only up to `MAX_EXAMPLES`
offending rows are fetched to explain a failure. Each returns a `CheckResult`.

Scope with `tenant`: rows of that tenant (an allocation by its own or its invoice's tenant).

Choices made where SPEC.md is silent:
- Invariant 4 (no orphans): a reference to a missing invoice, payment or credit is an orphan
  whether or not the allocation is reversed; a tenant or currency mismatch matters only while the
  allocation is active (a reversed one moves no money and stays as history; that is how
  `pay10_cleanup_orphans` neutralises it).
- Invariant 6 (audit): a row the backfill created is covered by its backfill audit row (one per
  invoice or payment, SPEC.md), matched by invoice id or payment id; anything else needs a row
  naming it: an allocation by `allocation_id`, a reversal by `allocation_id` with one of
  `REVERSAL_EVENTS`, a credit by `credit_id`, a refund by a `PAYMENT_REFUNDED` row of its payment
  (counted per payment, as refunds have no id column in the audit table), a PAY-10 payment by
  `payment_id`.
- Invariant 7 (conservation): every backfilled allocation counts, reversed or not (a later
  reversal is new history, not a change to what the backfill did). A legacy succeeded payment is
  "fully placed" when its backfilled allocations plus its backfilled credits equal its amount; one
  that a person verified after PAY-10 (a non-backfill `PAYMENT_VERIFIED` audit row) is placed by
  the services and left out. A payment whose currency differs from its tenant's is the one
  exception: it is listed as needing a person and does not fail verification, unless the backfill
  allocated or credited it anyway.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.db import connection
from django.db.models import BigIntegerField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from billing.models import Invoice, Tenant
from payments.domain import status as engine
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    BackfillDeviation,
    Channel,
    Credit,
    InvoiceMigration,
    LegacyPaymentStatus,
    Payment,
    PaymentAuditLog,
    PaymentMigration,
    Refund,
)
from payments.selectors.balances import ZERO, credits_with_balances, invoices_with_balances, payments_with_balances

MAX_EXAMPLES = 10
SYNTHETIC_KEY_PREFIX = "pay10-backfill:"
# Audit events that record an allocation being released.
REVERSAL_EVENTS = (
    AuditEvent.ALLOCATION_REVERSED,
    AuditEvent.PAYMENT_REJECTED,
    AuditEvent.INVOICE_VOIDED,
    AuditEvent.ORPHAN_REMOVED,
)

PAYMENTS_OK = "no payment applies, credits or refunds more than its amount"
PAYMENTS_OVER_APPLIED = (
    "{count} payment(s) apply more than their amount: active allocations + credits issued + refunds of "
    "unallocated money exceed the payment (unallocated_cents < 0)"
)
CREDITS_OK = "no credit is applied or refunded beyond its amount"
CREDITS_OVER_APPLIED = "{count} credit(s) applied or refunded beyond their amount (remaining_cents < 0)"
INVOICES_OK = "no migrated invoice has more money applied (paid + pending) than its amount"
INVOICES_OVER_APPLIED = (
    "{count} invoice(s) have more money applied than their amount: {over_paid} by verified money and credit "
    "alone (negative outstanding), the rest once pending allocations are counted (negative balance)"
)
ORPHANS_OK = "every allocation's invoice and payment/credit exist, in the same tenant and currency"
ORPHANS_FOUND = (
    "{count} orphaned allocation(s): {missing} reference a missing invoice/payment/credit, {crossing} active "
    "one(s) cross tenant or currency; run `manage.py pay10_cleanup_orphans --dry-run`, then without --dry-run"
)
STATUSES_OK = "every migrated invoice's stored status equals the status engine's verdict for {today}"
STATUSES_STALE_BY_DATE = (
    "{count} stored status(es) differ from the engine's verdict for {today}, all because due dates have "
    "passed since they were stored: run `manage.py pay10_refresh_statuses`"
)
STATUSES_WRONG = (
    "{count} stored status(es) differ from the engine's verdict for {today} ({by_date} only because due dates "
    "have passed; `manage.py pay10_refresh_statuses` fixes those); the others disagree with the invoice's money"
)
AUDIT_OK = "every allocation, reversal, credit, refund and PAY-10 payment has its audit row"
AUDIT_MISSING = "{count} money row(s) without their audit row: {by_kind}"
CONSERVATION_OK = "per tenant, legacy paid totals equal backfilled allocations and every legacy succeeded payment is placed"
CONSERVATION_BROKEN = (
    "backfill did not conserve money: {tenants} tenant(s) whose legacy paid total differs from backfilled "
    "allocations ({totals}); {invoices} invoice(s) whose backfilled allocations differ from their legacy paid "
    "figure; {payments} legacy succeeded payment(s) not fully allocated or credited"
)
NEEDS_A_PERSON_NONE = "no legacy payment has a currency other than its tenant's"
NEEDS_A_PERSON = (
    "{count} payment(s) in a currency other than their tenant's: left unallocated by the backfill (SPEC.md's "
    "one exception to invariant 7); a person must resolve them — reported, not a failure"
)
NEEDS_A_PERSON_PLACED = (
    "{count} payment(s) in a currency other than their tenant's, {placed} of which the backfill allocated or "
    "credited although SPEC.md says to leave them for a person"
)
MIGRATION_COMPLETE = "every invoice is migrated and every legacy payment mapped"
MIGRATION_INCOMPLETE = (
    "{invoices} invoice(s) not yet migrated and {payments} legacy payment(s) not yet mapped: run "
    "`manage.py pay10_backfill` (or pass --allow-partial while it runs)"
)
MIGRATION_PARTIAL_ALLOWED = (
    "{invoices} invoice(s) not yet migrated and {payments} legacy payment(s) not yet mapped (allowed by --allow-partial)"
)
MIGRATION_HIDDEN_ALLOCATIONS = (
    "{hidden} active allocation(s) apply money to invoices that are not migrated, so readers do not see it; "
    "a write to an invoice must migrate it first"
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    count: int
    explanation: str
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "count": self.count,
            "examples": self.examples,
            "explanation": self.explanation,
        }


def _scoped(queryset: QuerySet, tenant: Tenant | None, lookup: str = "tenant") -> QuerySet:
    return queryset if tenant is None else queryset.filter(**{lookup: tenant})


def _sum(queryset: QuerySet, group_by: str) -> Coalesce:
    summed = queryset.order_by().values(group_by).annotate(total=Sum("amount_cents")).values("total")
    return Coalesce(Subquery(summed, output_field=BigIntegerField()), ZERO)


def _examples(queryset: QuerySet, *fields: str) -> list[dict]:
    return [
        {key: value.isoformat() if isinstance(value, date) else value for key, value in row.items()}
        for row in queryset.order_by("pk").values(*fields)[:MAX_EXAMPLES]
    ]


# Invariant 1 ------------------------------------------------------------------------------------
def check_payments_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    over = payments_with_balances(tenant=tenant).filter(unallocated_cents__lt=0)
    count = over.count()
    return CheckResult(
        name="payments_within_amount",
        ok=count == 0,
        count=count,
        explanation=PAYMENTS_OVER_APPLIED.format(count=count) if count else PAYMENTS_OK,
        examples=_examples(
            over, "id", "tenant_id", "amount_cents", "allocated_cents", "credited_cents", "refunded_cents",
            "unallocated_cents",
        ),
    )


# Invariant 2 ------------------------------------------------------------------------------------
def check_credits_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    over = credits_with_balances(tenant=tenant).filter(remaining_cents__lt=0)
    count = over.count()
    return CheckResult(
        name="credits_within_amount",
        ok=count == 0,
        count=count,
        explanation=CREDITS_OVER_APPLIED.format(count=count) if count else CREDITS_OK,
        examples=_examples(over, "id", "tenant_id", "amount_cents", "applied_cents", "refunded_cents", "remaining_cents"),
    )


# Invariant 3 ------------------------------------------------------------------------------------
def check_invoices_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    over = invoices_with_balances(tenant=tenant).filter(is_migrated=True, balance_cents__lt=0)
    count = over.count()
    over_paid = over.filter(outstanding_cents__lt=0).count() if count else 0
    return CheckResult(
        name="invoices_within_amount",
        ok=count == 0,
        count=count,
        explanation=INVOICES_OVER_APPLIED.format(count=count, over_paid=over_paid) if count else INVOICES_OK,
        examples=_examples(
            over, "id", "tenant_id", "number", "amount_cents", "paid_cents", "pending_cents", "balance_cents"
        ),
    )


# Invariant 4 ------------------------------------------------------------------------------------
ORPHAN_COLUMNS = (
    "id", "tenant_id", "invoice_id", "payment_id", "credit_id", "amount_cents", "backfilled", "is_reversed",
    "invoice_missing", "payment_missing", "credit_missing", "invoice_tenant_id", "invoice_currency",
    "payment_tenant_id", "payment_currency", "credit_tenant_id", "credit_currency",
)
_ORPHANS_SQL = """
SELECT a.id, a.tenant_id, a.invoice_id, a.payment_id, a.credit_id, a.amount_cents, a.backfilled,
       r.allocation_id IS NOT NULL,
       i.id IS NULL, a.payment_id IS NOT NULL AND p.id IS NULL, a.credit_id IS NOT NULL AND c.id IS NULL,
       i.tenant_id, i.currency, p.tenant_id, p.currency, c.tenant_id, c.currency
FROM payments_allocation a
LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id
LEFT JOIN billing_invoice i ON i.id = a.invoice_id
LEFT JOIN payments_payment p ON p.id = a.payment_id
LEFT JOIN payments_credit c ON c.id = a.credit_id
WHERE (
    i.id IS NULL
    OR (a.payment_id IS NOT NULL AND p.id IS NULL)
    OR (a.credit_id IS NOT NULL AND c.id IS NULL)
    OR (r.allocation_id IS NULL AND (
        a.tenant_id <> i.tenant_id
        OR p.tenant_id <> i.tenant_id OR p.currency <> i.currency
        OR c.tenant_id <> i.tenant_id OR c.currency <> i.currency
    ))
) {tenant_filter}
ORDER BY a.id
"""


def orphaned_allocations(*, tenant: Tenant | None = None, limit: int | None = None) -> list[dict]:
    """Allocations breaking invariant 4, one dict per row with the reason columns (see `ORPHAN_COLUMNS`).

    Raw SQL because the point is rows whose foreign keys lead nowhere: the ORM's joins would drop them.
    """
    sql = _ORPHANS_SQL.format(tenant_filter="AND (a.tenant_id = %s OR i.tenant_id = %s)" if tenant else "")
    params: list = [tenant.pk, tenant.pk] if tenant else []
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
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
    orphans = orphaned_allocations(tenant=tenant)
    missing = sum(1 for orphan in orphans if orphan["reason"].startswith("missing"))
    count = len(orphans)
    return CheckResult(
        name="no_orphan_allocations",
        ok=count == 0,
        count=count,
        explanation=ORPHANS_FOUND.format(count=count, missing=missing, crossing=count - missing) if count else ORPHANS_OK,
        examples=orphans[:MAX_EXAMPLES],
    )


# Invariant 5 ------------------------------------------------------------------------------------
def stale_invoice_statuses(*, tenant: Tenant | None = None, today: date | None = None) -> QuerySet[Invoice]:
    """Migrated invoices whose stored status is not the engine's verdict for `today`."""
    return invoices_with_balances(tenant=tenant, today=today).filter(is_migrated=True).exclude(status=F("status_today"))


def check_stored_statuses(*, tenant: Tenant | None = None, today: date) -> CheckResult:
    stale = stale_invoice_statuses(tenant=tenant, today=today)
    count = stale.count()
    if not count:
        explanation = STATUSES_OK.format(today=today)
    else:
        by_date = stale.filter(status__in=[engine.ISSUED, engine.PARTIALLY_PAID], status_today=engine.OVERDUE).count()
        template = STATUSES_STALE_BY_DATE if by_date == count else STATUSES_WRONG
        explanation = template.format(count=count, today=today, by_date=by_date)
    return CheckResult(
        name="stored_status_matches_engine",
        ok=count == 0,
        count=count,
        explanation=explanation,
        examples=_examples(stale, "id", "tenant_id", "number", "status", "status_today", "amount_cents", "paid_cents", "due_date"),
    )


# Invariant 6 ------------------------------------------------------------------------------------
def _audited(**match) -> Exists:
    return Exists(PaymentAuditLog.objects.filter(**match))


def _backfill_audited(*conditions: Q) -> Exists:
    matches = Q()
    for condition in conditions:
        matches |= condition
    return Exists(PaymentAuditLog.objects.filter(matches, backfilled=True))


def synthetic_payment_condition() -> Q:
    """The payments the backfill made up to cover a shortfall."""
    return Q(channel=Channel.LEGACY) | Q(idempotency_key__startswith=SYNTHETIC_KEY_PREFIX)


def unaudited_rows(*, tenant: Tenant | None = None) -> dict[str, QuerySet]:
    """Per kind of money row, the rows of that kind lacking their audit row."""
    allocations = _scoped(Allocation.objects.all(), tenant).annotate(
        audited=_audited(allocation_id=OuterRef("pk")),
        backfill_audited=_backfill_audited(Q(invoice_id=OuterRef("invoice_id"))),
    ).filter(Q(audited=False) & (Q(backfilled=False) | Q(backfill_audited=False)))
    reversals = _scoped(AllocationReversal.objects.all(), tenant, "allocation__tenant").annotate(
        audited=_audited(allocation_id=OuterRef("allocation_id"), event_type__in=REVERSAL_EVENTS),
    ).filter(audited=False)
    credits = _scoped(Credit.objects.all(), tenant).annotate(
        audited=_audited(credit_id=OuterRef("pk")),
        backfill_audited=_backfill_audited(Q(payment_id=OuterRef("source_payment_id"))),
    ).filter(Q(audited=False) & (Q(backfilled=False) | Q(backfill_audited=False)))
    refund_counts = (
        Refund.objects.filter(payment_id=OuterRef("pk")).order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    audit_counts = (
        PaymentAuditLog.objects.filter(payment_id=OuterRef("pk"), event_type=AuditEvent.PAYMENT_REFUNDED)
        .order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    refunds = _scoped(Payment.objects.all(), tenant).annotate(
        refund_count=Coalesce(Subquery(refund_counts, output_field=BigIntegerField()), ZERO),
        refund_audit_count=Coalesce(Subquery(audit_counts, output_field=BigIntegerField()), ZERO),
    ).filter(refund_count__gt=F("refund_audit_count"))
    payments = base = _scoped(Payment.objects.all(), tenant)
    payments = base.filter(verification_status__isnull=False).exclude(synthetic_payment_condition()).annotate(
        mapped=Exists(PaymentMigration.objects.filter(payment_id=OuterRef("pk"))),
        audited=_audited(payment_id=OuterRef("pk")),
    ).filter(mapped=False, audited=False)
    synthetic = base.filter(synthetic_payment_condition()).annotate(
        backfill_audited=_backfill_audited(Q(payment_id=OuterRef("pk")), Q(invoice_id=OuterRef("invoice_id"))),
    ).filter(backfill_audited=False)
    return {
        "allocation": allocations,
        "reversal": reversals,
        "credit": credits,
        "refunded payment": refunds,
        "PAY-10 payment": payments,
        "synthetic payment": synthetic,
    }


def check_audit_trail(*, tenant: Tenant | None = None) -> CheckResult:
    counts: dict[str, int] = {}
    examples: list[dict] = []
    for kind, queryset in unaudited_rows(tenant=tenant).items():
        counts[kind] = queryset.count()
        if counts[kind] and len(examples) < MAX_EXAMPLES:
            examples += [{"kind": kind, "id": pk} for pk in queryset.order_by("pk").values_list("pk", flat=True)[:MAX_EXAMPLES - len(examples)]]
    count = sum(counts.values())
    by_kind = ", ".join(f"{n} {kind}(s)" for kind, n in counts.items() if n)
    return CheckResult(
        name="audit_trail_complete",
        ok=count == 0,
        count=count,
        explanation=AUDIT_MISSING.format(count=count, by_kind=by_kind) if count else AUDIT_OK,
        examples=examples,
    )


# Invariant 7 ------------------------------------------------------------------------------------
def _currency_mismatch() -> Q:
    return ~Q(currency=F("tenant__currency"))


def unplaced_legacy_payments(*, tenant: Tenant | None = None) -> QuerySet[Payment]:
    """Legacy succeeded payments the backfill mapped whose every cent is not allocated or credited by it."""
    verified_later = PaymentAuditLog.objects.filter(
        payment_id=OuterRef("pk"), event_type=AuditEvent.PAYMENT_VERIFIED, backfilled=False
    )
    return (
        _scoped(Payment.objects.all(), tenant)
        .filter(status=LegacyPaymentStatus.SUCCEEDED)
        .filter(Exists(PaymentMigration.objects.filter(payment_id=OuterRef("pk"))))
        .exclude(synthetic_payment_condition())
        .exclude(_currency_mismatch())
        .exclude(Exists(verified_later))
        .annotate(
            backfill_allocated_cents=_sum(Allocation.objects.filter(backfilled=True, payment_id=OuterRef("pk")), "payment_id"),
            backfill_credited_cents=_sum(Credit.objects.filter(backfilled=True, source_payment_id=OuterRef("pk")), "source_payment_id"),
        )
        .exclude(amount_cents=F("backfill_allocated_cents") + F("backfill_credited_cents"))
    )


def legacy_paid_versus_backfilled(*, tenant: Tenant | None = None) -> dict[str, tuple[int, int]]:
    """Per tenant: (sum of legacy paid figures of migrated invoices, sum of backfilled allocations)."""
    legacy = _scoped(InvoiceMigration.objects.all(), tenant, "invoice__tenant").values("invoice__tenant_id").annotate(
        total=Sum("legacy_paid_cents")
    ).order_by()
    allocated = _scoped(Allocation.objects.filter(backfilled=True), tenant).values("tenant_id").annotate(
        total=Sum("amount_cents")
    ).order_by()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in legacy:
        totals[row["invoice__tenant_id"]][0] = row["total"] or 0
    for row in allocated:
        totals[row["tenant_id"]][1] = row["total"] or 0
    return {tenant_id: (pair[0], pair[1]) for tenant_id, pair in sorted(totals.items())}


def check_backfill_conservation(*, tenant: Tenant | None = None) -> CheckResult:
    totals = legacy_paid_versus_backfilled(tenant=tenant)
    unequal = {tenant_id: pair for tenant_id, pair in totals.items() if pair[0] != pair[1]}
    invoices = (
        _scoped(InvoiceMigration.objects.all(), tenant, "invoice__tenant")
        .annotate(
            backfill_allocated_cents=_sum(
                Allocation.objects.filter(backfilled=True, invoice_id=OuterRef("invoice_id")), "invoice_id"
            )
        )
        .exclude(legacy_paid_cents=F("backfill_allocated_cents"))
    )
    invoice_count = invoices.count()
    payments = unplaced_legacy_payments(tenant=tenant)
    payment_count = payments.count()
    count = len(unequal) + invoice_count + payment_count
    examples = [
        {"kind": "tenant", "tenant_id": tenant_id, "legacy_paid_cents": legacy, "backfill_allocated_cents": allocated}
        for tenant_id, (legacy, allocated) in list(unequal.items())[:MAX_EXAMPLES]
    ]
    examples += [
        {"kind": "invoice", **row}
        for row in _examples(
            invoices, "invoice_id", "invoice__tenant_id", "invoice__number", "legacy_paid_cents", "backfill_allocated_cents"
        )
    ][: MAX_EXAMPLES - len(examples)]
    examples += [
        {"kind": "payment", **row}
        for row in _examples(payments, "id", "tenant_id", "amount_cents", "backfill_allocated_cents", "backfill_credited_cents")
    ][: max(MAX_EXAMPLES - len(examples), 0)]
    explanation = CONSERVATION_OK
    if count:
        explanation = CONSERVATION_BROKEN.format(
            tenants=len(unequal),
            totals=", ".join(f"{t}: legacy {legacy} vs allocated {allocated}" for t, (legacy, allocated) in unequal.items())
            or "none",
            invoices=invoice_count,
            payments=payment_count,
        )
    return CheckResult(name="backfill_conserves_money", ok=count == 0, count=count, explanation=explanation, examples=examples)


def check_currency_mismatch_payments(*, tenant: Tenant | None = None) -> CheckResult:
    """Invariant 7's exception: payments in a foreign currency wait for a person. Reported, not a failure."""
    mismatched = _scoped(Payment.objects.all(), tenant).filter(_currency_mismatch()).annotate(
        backfill_allocated_cents=_sum(Allocation.objects.filter(backfilled=True, payment_id=OuterRef("pk")), "payment_id"),
        backfill_credited_cents=_sum(Credit.objects.filter(backfilled=True, source_payment_id=OuterRef("pk")), "source_payment_id"),
    )
    count = mismatched.count()
    placed = mismatched.filter(Q(backfill_allocated_cents__gt=0) | Q(backfill_credited_cents__gt=0)).count() if count else 0
    if placed:
        explanation = NEEDS_A_PERSON_PLACED.format(count=count, placed=placed)
    else:
        explanation = NEEDS_A_PERSON.format(count=count) if count else NEEDS_A_PERSON_NONE
    return CheckResult(
        name="currency_mismatch_needs_a_person",
        ok=placed == 0,
        count=count,
        explanation=explanation,
        examples=_examples(
            mismatched, "id", "tenant_id", "invoice_id", "amount_cents", "currency", "tenant__currency", "status",
            "backfill_allocated_cents", "backfill_credited_cents",
        ),
    )


# Migration progress -----------------------------------------------------------------------------
def check_migration_complete(*, tenant: Tenant | None = None, allow_partial: bool = False) -> CheckResult:
    unmigrated = _scoped(Invoice.objects.all(), tenant).filter(
        ~Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))
    )
    unmapped = _scoped(Payment.objects.all(), tenant).filter(verification_status__isnull=True)
    hidden = _scoped(Allocation.objects.filter(reversal__isnull=True), tenant).filter(
        ~Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("invoice_id")))
    )
    invoices, payments, hidden_count = unmigrated.count(), unmapped.count(), hidden.count()
    ok = hidden_count == 0 and (allow_partial or invoices + payments == 0)
    parts = []
    if hidden_count:
        parts.append(MIGRATION_HIDDEN_ALLOCATIONS.format(hidden=hidden_count))
    if invoices + payments:
        template = MIGRATION_PARTIAL_ALLOWED if allow_partial else MIGRATION_INCOMPLETE
        parts.append(template.format(invoices=invoices, payments=payments))
    examples = [{"kind": "allocation on unmigrated invoice", **row} for row in _examples(hidden, "id", "invoice_id", "amount_cents")]
    examples += [{"kind": "unmigrated invoice", **row} for row in _examples(unmigrated, "id", "tenant_id", "number", "status")]
    examples += [{"kind": "unmapped payment", **row} for row in _examples(unmapped, "id", "tenant_id", "status")]
    return CheckResult(
        name="migration_complete",
        ok=ok,
        count=invoices + payments + hidden_count,
        explanation="; ".join(parts) or MIGRATION_COMPLETE,
        examples=examples[:MAX_EXAMPLES],
    )


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
    ]


