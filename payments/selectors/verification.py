"""`pay10_verify`'s checks: every money invariant of SPEC.md as set-based SQL.

Each check is one or a few queries whose cost grows linearly with the tables: sums per payment,
credit or invoice are GROUP BY aggregates (raw SQL where three tables add up, the ORM otherwise),
"has no audit row" is an anti-join, orphans are one LEFT JOIN; never a Python loop over rows.
Only up to `MAX_EXAMPLES` offending rows are fetched to explain a failure. Each check returns a
`CheckResult`; `verification_run` runs them all on one snapshot (PostgreSQL REPEATABLE READ), so
writes the live app makes meanwhile cannot show up as differences between two checks.
Invariant 5 reads `invoices_with_balances`, the same definition FIN-01/FIN-02 show.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date

from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from billing.models import Invoice, Tenant
from billing.selectors.baseline import baseline_document
from payments.domain import status as engine
from payments.domain.backfill import SYNTHETIC_KEY_PREFIX
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    BackfillDeviation,
    Channel,
    Credit,
    FiguresState,
    INVOICE_BLOCK_BITS,
    InvoiceBlock,
    InvoiceDueRollup,
    InvoiceFigures,
    InvoiceMigration,
    InvoiceRollup,
    NO_DUE_DAY,
    LegacyPaymentStatus,
    Payment,
    PaymentAuditLog,
    PaymentMigration,
    Refund,
)
from payments.selectors.balances import (
    ACTIVE_ALLOCATION,
    PAID_ALLOCATION,
    PENDING_ALLOCATION,
    ZERO,
    credits_with_balances,
    invoices_with_balances,
    invoices_with_balances_grouped,
)
from payments.selectors.figures import figures_ready
from payments.services.statistics import VERIFY_TABLES, analyze

MAX_EXAMPLES = 10
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
    "{count} payment(s) in a currency other than their tenant's, of which the backfill allocated {allocated} and "
    "credited {credited} although SPEC.md says to leave them for a person"
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


def _raw_violations(sql: str, params: list, columns: tuple[str, ...]) -> tuple[int, list[dict]]:
    """(how many rows `sql` returns, the first `MAX_EXAMPLES` of them by their first column)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) violations", params)
        count = cursor.fetchone()[0]
        if not count:
            return 0, []
        cursor.execute(f"{sql} ORDER BY 1 LIMIT {MAX_EXAMPLES}", params)
        return count, [dict(zip(columns, row)) for row in cursor.fetchall()]


def _tenant_sql(tenant: Tenant | None, column: str) -> tuple[str, list]:
    return (f" AND {column} = %s", [tenant.pk]) if tenant is not None else ("", [])


# The multi-row sums below are hash aggregates over whole tables (GROUP BY, anti-joins), one pass
# each, rather than a correlated subquery per row: linear at millions of rows.
ACTIVE_ALLOCATION_SQL = "NOT EXISTS (SELECT 1 FROM payments_allocationreversal r WHERE r.allocation_id = a.id)"

# Invariant 1 ------------------------------------------------------------------------------------
PAYMENT_COLUMNS = ("id", "tenant_id", "amount_cents", "allocated_cents", "credited_cents", "refunded_cents", "unallocated_cents")
_PAYMENTS_OVER_SQL = f"""
SELECT p.id, p.tenant_id, p.amount_cents, used.allocated, used.credited, used.refunded,
       p.amount_cents - used.allocated - used.credited - used.refunded
FROM (
    SELECT payment_id, CAST(SUM(allocated) AS BIGINT) AS allocated, CAST(SUM(credited) AS BIGINT) AS credited,
           CAST(SUM(refunded) AS BIGINT) AS refunded
    FROM (
        SELECT a.payment_id, a.amount_cents AS allocated, 0 AS credited, 0 AS refunded
        FROM payments_allocation a WHERE a.payment_id IS NOT NULL AND {ACTIVE_ALLOCATION_SQL}
        UNION ALL
        SELECT c.source_payment_id, 0, c.amount_cents, 0 FROM payments_credit c WHERE c.source_payment_id IS NOT NULL
        UNION ALL
        SELECT f.payment_id, 0, 0, f.amount_cents FROM payments_refund f WHERE f.credit_id IS NULL
    ) uses
    GROUP BY payment_id
) used
JOIN payments_payment p ON p.id = used.payment_id
WHERE used.allocated + used.credited + used.refunded > p.amount_cents"""


def check_payments_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    tenant_sql, params = _tenant_sql(tenant, "p.tenant_id")
    count, examples = _raw_violations(_PAYMENTS_OVER_SQL + tenant_sql, params, PAYMENT_COLUMNS)
    return CheckResult(
        name="payments_within_amount",
        ok=count == 0,
        count=count,
        explanation=PAYMENTS_OVER_APPLIED.format(count=count) if count else PAYMENTS_OK,
        examples=examples,
    )


# Invariant 2 ------------------------------------------------------------------------------------
CREDIT_COLUMNS = ("id", "tenant_id", "amount_cents", "applied_cents", "refunded_cents", "remaining_cents")
_CREDITS_OVER_SQL = f"""
SELECT c.id, c.tenant_id, c.amount_cents, used.applied, used.refunded, c.amount_cents - used.applied - used.refunded
FROM (
    SELECT credit_id, CAST(SUM(applied) AS BIGINT) AS applied, CAST(SUM(refunded) AS BIGINT) AS refunded
    FROM (
        SELECT a.credit_id, a.amount_cents AS applied, 0 AS refunded
        FROM payments_allocation a WHERE a.credit_id IS NOT NULL AND {ACTIVE_ALLOCATION_SQL}
        UNION ALL
        SELECT f.credit_id, 0, f.amount_cents FROM payments_refund f WHERE f.credit_id IS NOT NULL
    ) uses
    GROUP BY credit_id
) used
JOIN payments_credit c ON c.id = used.credit_id
WHERE used.applied + used.refunded > c.amount_cents"""


def check_credits_within_amount(*, tenant: Tenant | None = None) -> CheckResult:
    tenant_sql, params = _tenant_sql(tenant, "c.tenant_id")
    count, examples = _raw_violations(_CREDITS_OVER_SQL + tenant_sql, params, CREDIT_COLUMNS)
    return CheckResult(
        name="credits_within_amount",
        ok=count == 0,
        count=count,
        explanation=CREDITS_OVER_APPLIED.format(count=count) if count else CREDITS_OK,
        examples=examples,
    )


# Invariant 3 ------------------------------------------------------------------------------------
def over_applied_invoices(*, tenant: Tenant | None = None) -> QuerySet:
    """Migrated invoices whose active allocations (paid + pending) exceed their amount, one row per
    invoice, grouped over the allocations (the same paid/pending definitions as the balance helpers)."""
    return (
        _scoped(Allocation.objects.filter(ACTIVE_ALLOCATION, invoice__pay10_migration__isnull=False), tenant, "invoice__tenant")
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
    return CheckResult(
        name="invoices_within_amount",
        ok=count == 0,
        count=count,
        explanation=INVOICES_OVER_APPLIED.format(count=count, over_paid=over_paid) if count else INVOICES_OK,
        examples=examples,
    )


# Invariant 4 ------------------------------------------------------------------------------------
ORPHAN_COLUMNS = (
    "id", "tenant_id", "invoice_id", "payment_id", "credit_id", "amount_cents", "backfilled", "is_reversed",
    "invoice_missing", "payment_missing", "credit_missing", "invoice_tenant_id", "invoice_currency",
    "payment_tenant_id", "payment_currency", "credit_tenant_id", "credit_currency",
)
_ORPHANS_SQL = """
SELECT a.id, a.tenant_id, a.invoice_id, a.payment_id, a.credit_id, a.amount_cents, a.backfilled,
       r.allocation_id IS NOT NULL AS is_reversed,
       i.id IS NULL AS invoice_missing,
       a.payment_id IS NOT NULL AND p.id IS NULL AS payment_missing,
       a.credit_id IS NOT NULL AND c.id IS NULL AS credit_missing,
       i.tenant_id AS invoice_tenant_id, i.currency AS invoice_currency,
       p.tenant_id AS payment_tenant_id, p.currency AS payment_currency,
       c.tenant_id AS credit_tenant_id, c.currency AS credit_currency
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
) {tenant_filter}"""


def _orphans_sql(tenant: Tenant | None) -> tuple[str, list]:
    if tenant is None:
        return _ORPHANS_SQL.format(tenant_filter=""), []
    return _ORPHANS_SQL.format(tenant_filter="AND (a.tenant_id = %s OR i.tenant_id = %s)"), [tenant.pk, tenant.pk]


def orphaned_allocations(*, tenant: Tenant | None = None, limit: int | None = None) -> list[dict]:
    """Allocations breaking invariant 4, by id, one dict per row with the reason columns (see `ORPHAN_COLUMNS`).

    Raw SQL because the point is rows whose foreign keys lead nowhere: the ORM's joins would drop them.
    """
    sql, params = _orphans_sql(tenant)
    sql += " ORDER BY a.id"
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


def orphan_counts(*, tenant: Tenant | None = None) -> tuple[int, int]:
    """(orphaned allocations, those among them whose invoice, payment or credit is missing)."""
    sql, params = _orphans_sql(tenant)
    missing = "CASE WHEN invoice_missing OR payment_missing OR credit_missing THEN 1 ELSE 0 END"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COALESCE(SUM({missing}), 0) FROM ({sql}) orphans", params)
        total, missing = cursor.fetchone()
    return total, int(missing)


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
    return CheckResult(
        name="no_orphan_allocations",
        ok=count == 0,
        count=count,
        explanation=ORPHANS_FOUND.format(count=count, missing=missing, crossing=count - missing) if count else ORPHANS_OK,
        examples=orphaned_allocations(tenant=tenant, limit=MAX_EXAMPLES) if count else [],
    )


# Invariant 5 ------------------------------------------------------------------------------------
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
        examples=_examples(stale, "id", "tenant_id", "number", "status", "status_today", "amount_cents", "paid_cents", "due_date")
        if count
        else [],
    )


# Invariant 6 ------------------------------------------------------------------------------------
def _unaudited(**match) -> Exists:
    """NOT EXISTS an audit row matching: a plain anti-join in the WHERE clause."""
    return ~Exists(PaymentAuditLog.objects.filter(**match))


def synthetic_payment_condition() -> Q:
    """The payments the backfill made up to cover a shortfall."""
    return Q(channel=Channel.LEGACY) | Q(idempotency_key__startswith=SYNTHETIC_KEY_PREFIX)


def unaudited_rows(*, tenant: Tenant | None = None) -> dict[str, list[QuerySet]]:
    """Per kind of money row, querysets of the rows of that kind lacking their audit row. Each is a
    conjunction of anti-joins, so the database answers it in one pass."""
    allocations = _scoped(Allocation.objects.all(), tenant)
    credits = _scoped(Credit.objects.all(), tenant)
    payments = _scoped(Payment.objects.all(), tenant)
    refund_audits = (
        PaymentAuditLog.objects.filter(payment_id=OuterRef("pk"), event_type=AuditEvent.PAYMENT_REFUNDED)
        .order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    refunds = (
        Refund.objects.filter(payment_id=OuterRef("pk")).order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    return {
        "allocation": [
            allocations.filter(_unaudited(allocation_id=OuterRef("pk")), backfilled=False),
            allocations.filter(
                _unaudited(allocation_id=OuterRef("pk")),
                _unaudited(invoice_id=OuterRef("invoice_id"), backfilled=True),
                backfilled=True,
            ),
        ],
        "reversal": [
            _scoped(AllocationReversal.objects.all(), tenant, "allocation__tenant").filter(
                _unaudited(allocation_id=OuterRef("allocation_id"), event_type__in=REVERSAL_EVENTS)
            )
        ],
        "credit": [
            credits.filter(_unaudited(credit_id=OuterRef("pk")), backfilled=False),
            credits.filter(
                _unaudited(credit_id=OuterRef("pk")),
                _unaudited(payment_id=OuterRef("source_payment_id"), backfilled=True),
                backfilled=True,
            ),
        ],
        "refunded payment": [
            payments.filter(Exists(Refund.objects.filter(payment_id=OuterRef("pk"))))
            .annotate(
                refund_count=Subquery(refunds, output_field=BigIntegerField()),
                refund_audit_count=Coalesce(Subquery(refund_audits, output_field=BigIntegerField()), ZERO),
            )
            .filter(refund_count__gt=F("refund_audit_count"))
        ],
        "PAY-10 payment": [
            payments.filter(verification_status__isnull=False)
            .exclude(synthetic_payment_condition())
            .filter(~Exists(PaymentMigration.objects.filter(payment_id=OuterRef("pk"))), _unaudited(payment_id=OuterRef("pk")))
        ],
        "synthetic payment": [
            payments.filter(synthetic_payment_condition()).filter(
                _unaudited(payment_id=OuterRef("pk"), backfilled=True),
                _unaudited(invoice_id=OuterRef("invoice_id"), backfilled=True),
            )
        ],
    }


def check_audit_trail(*, tenant: Tenant | None = None) -> CheckResult:
    counts: dict[str, int] = defaultdict(int)
    examples: list[dict] = []
    for kind, querysets in unaudited_rows(tenant=tenant).items():
        for queryset in querysets:
            found = queryset.count()
            counts[kind] += found
            if found and len(examples) < MAX_EXAMPLES:
                ids = queryset.order_by("pk").values_list("pk", flat=True)[: MAX_EXAMPLES - len(examples)]
                examples += [{"kind": kind, "id": pk} for pk in ids]
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


UNCONSERVED_INVOICE_COLUMNS = ("invoice_id", "tenant_id", "number", "legacy_paid_cents", "backfill_allocated_cents")
_UNCONSERVED_INVOICES_SQL = """
SELECT m.invoice_id, i.tenant_id, i.number, m.legacy_paid_cents, COALESCE(b.total, 0)
FROM payments_invoicemigration m
JOIN billing_invoice i ON i.id = m.invoice_id
LEFT JOIN (
    SELECT invoice_id, CAST(SUM(amount_cents) AS BIGINT) AS total FROM payments_allocation
    WHERE backfilled = %s GROUP BY invoice_id
) b ON b.invoice_id = m.invoice_id
WHERE m.legacy_paid_cents <> COALESCE(b.total, 0)"""

UNPLACED_PAYMENT_COLUMNS = ("id", "tenant_id", "amount_cents", "backfill_allocated_cents", "backfill_credited_cents")
_UNPLACED_PAYMENTS_SQL = """
SELECT p.id, p.tenant_id, p.amount_cents, COALESCE(a.total, 0), COALESCE(c.total, 0)
FROM payments_payment p
JOIN payments_paymentmigration pm ON pm.payment_id = p.id
JOIN billing_tenant t ON t.id = p.tenant_id
LEFT JOIN (
    SELECT payment_id, CAST(SUM(amount_cents) AS BIGINT) AS total FROM payments_allocation
    WHERE backfilled = %s AND payment_id IS NOT NULL GROUP BY payment_id
) a ON a.payment_id = p.id
LEFT JOIN (
    SELECT source_payment_id, CAST(SUM(amount_cents) AS BIGINT) AS total FROM payments_credit
    WHERE backfilled = %s AND source_payment_id IS NOT NULL GROUP BY source_payment_id
) c ON c.source_payment_id = p.id
WHERE p.status = %s AND p.currency = t.currency
  AND COALESCE(p.channel, '') <> %s AND COALESCE(p.idempotency_key, '') NOT LIKE %s
  AND NOT EXISTS (
      SELECT 1 FROM payments_paymentauditlog l
      WHERE l.payment_id = p.id AND l.event_type = %s AND l.backfilled = %s
  )
  AND p.amount_cents <> COALESCE(a.total, 0) + COALESCE(c.total, 0)"""


def unplaced_legacy_payments(*, tenant: Tenant | None = None) -> tuple[int, list[dict]]:
    """Legacy succeeded payments the backfill mapped whose every cent it did not allocate or credit:
    (count, examples). Left out: synthetic payments, foreign-currency payments (a person's), and
    payments a person verified after PAY-10 (the services placed their money)."""
    tenant_sql, tenant_params = _tenant_sql(tenant, "p.tenant_id")
    params = [
        True, True, LegacyPaymentStatus.SUCCEEDED, Channel.LEGACY, f"{SYNTHETIC_KEY_PREFIX}%",
        AuditEvent.PAYMENT_VERIFIED, False, *tenant_params,
    ]
    return _raw_violations(_UNPLACED_PAYMENTS_SQL + tenant_sql, params, UNPLACED_PAYMENT_COLUMNS)


def check_backfill_conservation(*, tenant: Tenant | None = None) -> CheckResult:
    totals = legacy_paid_versus_backfilled(tenant=tenant)
    unequal = {tenant_id: pair for tenant_id, pair in totals.items() if pair[0] != pair[1]}
    tenant_sql, tenant_params = _tenant_sql(tenant, "i.tenant_id")
    invoice_count, invoice_examples = _raw_violations(
        _UNCONSERVED_INVOICES_SQL + tenant_sql, [True, *tenant_params], UNCONSERVED_INVOICE_COLUMNS
    )
    payment_count, payment_examples = unplaced_legacy_payments(tenant=tenant)
    count = len(unequal) + invoice_count + payment_count
    examples = [
        {"kind": "tenant", "tenant_id": tenant_id, "legacy_paid_cents": legacy, "backfill_allocated_cents": allocated}
        for tenant_id, (legacy, allocated) in unequal.items()
    ]
    examples += [{"kind": "invoice", **row} for row in invoice_examples]
    examples += [{"kind": "payment", **row} for row in payment_examples]
    explanation = CONSERVATION_OK
    if count:
        explanation = CONSERVATION_BROKEN.format(
            tenants=len(unequal),
            totals=", ".join(f"{t}: legacy {legacy} vs allocated {allocated}" for t, (legacy, allocated) in unequal.items())
            or "none",
            invoices=invoice_count,
            payments=payment_count,
        )
    return CheckResult(
        name="backfill_conserves_money", ok=count == 0, count=count, explanation=explanation, examples=examples[:MAX_EXAMPLES]
    )


def check_currency_mismatch_payments(*, tenant: Tenant | None = None) -> CheckResult:
    """Invariant 7's exception: payments in a foreign currency wait for a person. Reported, not a failure."""
    mismatched = _scoped(Payment.objects.all(), tenant).filter(_currency_mismatch())
    count = mismatched.count()
    allocated = credited = 0
    if count:
        allocated = mismatched.filter(Exists(Allocation.objects.filter(backfilled=True, payment_id=OuterRef("pk")))).count()
        credited = mismatched.filter(Exists(Credit.objects.filter(backfilled=True, source_payment_id=OuterRef("pk")))).count()
    placed = allocated + credited
    if placed:
        explanation = NEEDS_A_PERSON_PLACED.format(count=count, allocated=allocated, credited=credited)
    else:
        explanation = NEEDS_A_PERSON.format(count=count) if count else NEEDS_A_PERSON_NONE
    with_placement = mismatched.annotate(
        backfill_allocated_cents=_sum(Allocation.objects.filter(backfilled=True, payment_id=OuterRef("pk")), "payment_id"),
        backfill_credited_cents=_sum(Credit.objects.filter(backfilled=True, source_payment_id=OuterRef("pk")), "source_payment_id"),
    )
    examples = _examples(
        with_placement, "id", "tenant_id", "invoice_id", "amount_cents", "currency", "tenant__currency", "status",
        "backfill_allocated_cents", "backfill_credited_cents",
    ) if count else []
    return CheckResult(
        name="currency_mismatch_needs_a_person", ok=placed == 0, count=count, explanation=explanation, examples=examples
    )


# Migration progress -----------------------------------------------------------------------------
def check_migration_complete(*, tenant: Tenant | None = None, allow_partial: bool = False) -> CheckResult:
    unmigrated = _scoped(Invoice.objects.all(), tenant).filter(
        ~Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))
    )
    unmapped = _scoped(Payment.objects.all(), tenant).filter(verification_status__isnull=True)
    hidden = _scoped(Allocation.objects.filter(reversal__isnull=True), tenant).filter(
        Exists(Invoice.objects.filter(pk=OuterRef("invoice_id"))),  # a missing one is an orphan instead
        ~Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("invoice_id"))),
    )
    invoices, payments, hidden_count = unmigrated.count(), unmapped.count(), hidden.count()
    ok = hidden_count == 0 and (allow_partial or invoices + payments == 0)
    parts = []
    if hidden_count:
        parts.append(MIGRATION_HIDDEN_ALLOCATIONS.format(hidden=hidden_count))
    if invoices + payments:
        template = MIGRATION_PARTIAL_ALLOWED if allow_partial else MIGRATION_INCOMPLETE
        parts.append(template.format(invoices=invoices, payments=payments))
    examples = []
    if hidden_count:
        examples += [{"kind": "allocation on unmigrated invoice", **row} for row in _examples(hidden, "id", "invoice_id", "amount_cents")]
    if invoices:
        examples += [{"kind": "unmigrated invoice", **row} for row in _examples(unmigrated, "id", "tenant_id", "number", "status")]
    if payments:
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
        check_read_model(tenant=tenant),
    ]



# The FIN-01/FIN-02 read model -------------------------------------------------------------------
READ_MODEL_OK = "the FIN-01/FIN-02 read model equals the allocations ({invoices} invoice(s), {rows} rollup row(s))"
READ_MODEL_ABSENT = "no FIN-01/FIN-02 read model on this database (or a build is running): readers compute live"
READ_MODEL_DIFFERENT = (
    "the FIN-01/FIN-02 read model differs from the allocations: {invoices} invoice figure(s), {stray} figure(s) "
    "of deleted invoices, {rows} rollup or block row(s); run `manage.py pay10_rebuild_figures`"
)


def read_model_mismatches(*, tenant: Tenant | None = None) -> QuerySet[Invoice]:
    """Invoices whose `InvoiceFigures` row is missing or differs from `invoices_with_balances`
    (re-derived here, independently of the SQL that keeps the read model)."""
    no_due = Value(date.fromisoformat(NO_DUE_DAY))
    live = {
        "tenant_id": F("tenant_id"),
        "currency": F("currency"),
        "amount_cents": F("amount_cents"),
        "due_date": Coalesce("due_date", no_due),
        "paid_cents": F("paid_cents"),
        "pending_cents": F("pending_cents"),
        "state": Case(
            When(status__in=[FiguresState.DRAFT, FiguresState.VOID], then=F("status")),
            When(paid_cents__gte=F("amount_cents"), then=Value(FiguresState.PAID)),
            When(paid_cents__gt=0, then=Value(FiguresState.PART)),
            default=Value(FiguresState.UNPAID),
        ),
        "issue_day": TruncDate(Coalesce("issued_at", "created_at"), tzinfo=UTC),
    }
    stored = {name: F(f"figures__{name}") for name in live}
    stored["due_date"] = Coalesce("figures__due_date", no_due)
    invoices = invoices_with_balances_grouped(tenant=tenant).annotate(
        **{f"stored_{name}": value for name, value in stored.items()},
        **{f"live_{name}": value for name, value in live.items() if name in ("due_date", "state", "issue_day")},
    )
    differs = Q(stored_paid_cents__isnull=True)  # no figures row at all
    for name in live:
        current = F(f"live_{name}") if name in ("due_date", "state", "issue_day") else F(name)
        differs |= ~Q(**{f"stored_{name}": current})
    return invoices.filter(differs)


_ROLLUP_DIFFERENT_SQL = f"""
SELECT coalesce(f.tenant_id, r.tenant_id), coalesce(f.currency, r.currency), coalesce(f.state, r.state),
       coalesce(f.issue_day, r.issue_day), coalesce(f.due_day, r.due_day),
       f.n, r.invoice_count, f.amount, r.amount_cents, f.paid, r.paid_cents
FROM (
    SELECT tenant_id, currency, state, issue_day, coalesce(due_date, DATE '{NO_DUE_DAY}') AS due_day,
           count(*) AS n, CAST(sum(amount_cents) AS BIGINT) AS amount, CAST(sum(paid_cents) AS BIGINT) AS paid
    FROM {InvoiceFigures._meta.db_table} WHERE TRUE {{tenant}}
    GROUP BY 1, 2, 3, 4, 5
) f
FULL JOIN (
    SELECT * FROM {InvoiceRollup._meta.db_table}
    WHERE (invoice_count <> 0 OR amount_cents <> 0 OR paid_cents <> 0) {{tenant}}
) r USING (tenant_id, currency, state, issue_day, due_day)
WHERE (f.n, f.amount, f.paid) IS DISTINCT FROM (r.invoice_count, r.amount_cents, r.paid_cents)"""
_DUE_ROLLUP_DIFFERENT_SQL = f"""
SELECT coalesce(f.tenant_id, r.tenant_id), coalesce(f.currency, r.currency), coalesce(f.state, r.state),
       NULL, coalesce(f.due_day, r.due_day), f.n, r.invoice_count, f.amount, r.amount_cents, f.paid, r.paid_cents
FROM (
    SELECT tenant_id, currency, state, coalesce(due_date, DATE '{NO_DUE_DAY}') AS due_day,
           count(*) AS n, CAST(sum(amount_cents) AS BIGINT) AS amount, CAST(sum(paid_cents) AS BIGINT) AS paid
    FROM {InvoiceFigures._meta.db_table} WHERE TRUE {{tenant}}
    GROUP BY 1, 2, 3, 4
) f
FULL JOIN (
    SELECT * FROM {InvoiceDueRollup._meta.db_table}
    WHERE (invoice_count <> 0 OR amount_cents <> 0 OR paid_cents <> 0) {{tenant}}
) r USING (tenant_id, currency, state, due_day)
WHERE (f.n, f.amount, f.paid) IS DISTINCT FROM (r.invoice_count, r.amount_cents, r.paid_cents)"""
_BLOCKS_DIFFERENT_SQL = f"""
SELECT coalesce(f.tenant_id, b.tenant_id), coalesce(f.block, b.block), f.n, b.invoice_count
FROM (
    SELECT tenant_id, invoice_id >> {INVOICE_BLOCK_BITS} AS block, count(*) AS n
    FROM {InvoiceFigures._meta.db_table} WHERE TRUE {{tenant}}
    GROUP BY 1, 2
) f
FULL JOIN (
    SELECT * FROM {InvoiceBlock._meta.db_table} WHERE invoice_count <> 0 {{tenant}}
) b USING (tenant_id, block)
WHERE f.n IS DISTINCT FROM b.invoice_count"""
BLOCK_COLUMNS = ("tenant_id", "block", "figures_count", "block_count")
ROLLUP_COLUMNS = (
    "tenant_id", "currency", "state", "issue_day", "due_day",
    "figures_count", "rollup_count", "figures_amount_cents", "rollup_amount_cents", "figures_paid_cents", "rollup_paid_cents",
)


def check_read_model(*, tenant: Tenant | None = None) -> CheckResult:
    if not figures_ready():
        return CheckResult(name="read_model_matches", ok=True, count=0, explanation=READ_MODEL_ABSENT)
    mismatched = read_model_mismatches(tenant=tenant)
    invoices = mismatched.count()
    stray = _scoped(InvoiceFigures.objects.filter(~Exists(Invoice.objects.filter(pk=OuterRef("invoice_id")))), tenant)
    stray_count = stray.count()
    tenant_sql, tenant_params = _tenant_sql(tenant, "tenant_id")
    rows, row_examples = _raw_violations(
        _ROLLUP_DIFFERENT_SQL.format(tenant=tenant_sql), tenant_params * 2, ROLLUP_COLUMNS
    )
    by_due, by_due_examples = _raw_violations(
        _DUE_ROLLUP_DIFFERENT_SQL.format(tenant=tenant_sql), tenant_params * 2, ROLLUP_COLUMNS
    )
    rows += by_due
    row_examples += by_due_examples
    blocks, block_examples = _raw_violations(
        _BLOCKS_DIFFERENT_SQL.format(tenant=tenant_sql), tenant_params * 2, BLOCK_COLUMNS
    )
    rows += blocks
    row_examples += block_examples
    count = invoices + stray_count + rows
    if count:
        explanation = READ_MODEL_DIFFERENT.format(invoices=invoices, stray=stray_count, rows=rows)
        examples = (
            _examples(mismatched, "id", "tenant_id", "paid_cents", "stored_paid_cents", "pending_cents", "stored_pending_cents", "stored_state")
            + [{"invoice_id": pk, "stray": True} for pk in stray.values_list("invoice_id", flat=True)[:MAX_EXAMPLES]]
            + [{k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()} for row in row_examples]
        )[:MAX_EXAMPLES]
    else:
        explanation = READ_MODEL_OK.format(
            invoices=_scoped(InvoiceFigures.objects.all(), tenant).count(),
            rows=_scoped(InvoiceRollup.objects.filter(invoice_count__gt=0), tenant).count(),
        )
        examples = []
    return CheckResult(name="read_model_matches", ok=count == 0, count=count, explanation=explanation, examples=examples)


# Baseline comparison ----------------------------------------------------------------------------
FIN01_EXACT_FIELDS = (
    "invoicedCents", "collectedCents", "outstandingCents", "overdueCents", "pendingVerificationCents", "byStatus", "aging",
)
FIN01_OK = "FIN-01 ALL_TIME totals per currency equal the baseline's (engine verdicts for {as_of})"
FIN01_DIFFERENT = "{count} FIN-01 figure(s) differ from the baseline (engine verdicts for {as_of}); money was not conserved"
CREDIT_OK = "unapplied credit changed only by the credit the backfill created{by_reason}"
CREDIT_DIFFERENT = (
    "unapplied credit changed by more than the credit the backfill created, in {count} currency(ies){by_reason}"
)
STATUS_COUNTS_OK = "invoice count and amount by stored status equal the baseline's, after {moved} status change(s) the backfill recorded"
STATUS_COUNTS_DIFFERENT = (
    "{count} difference(s) in invoice count/amount by stored status not explained by the backfill's "
    "STATUS_CHANGED deviations ({unexplained} invoice(s) changed status without one)"
)
FIN02_OK = "FIN-02 page 1 ({rows} invoice(s)): paid and balance equal the baseline's, status differences explained"
FIN02_DIFFERENT = "{count} FIN-02 page-1 row(s) differ from the baseline: paid/balance changed, invoice missing or status changed unexplained"


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
    return CheckResult(
        name="baseline_fin01_totals",
        ok=count == 0,
        count=count,
        explanation=(FIN01_DIFFERENT if count else FIN01_OK).format(count=count, as_of=as_of),
        examples=differences[:MAX_EXAMPLES],
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
    return CheckResult(
        name="baseline_unapplied_credit",
        ok=count == 0,
        count=count,
        explanation=(CREDIT_DIFFERENT if count else CREDIT_OK).format(count=count, by_reason=reasons),
        examples=(differences + [{"kind": "backfill credit", **row} for row in by_reason])[:MAX_EXAMPLES],
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
    unexplained = _scoped(InvoiceMigration.objects.all(), tenant, "invoice__tenant").exclude(
        legacy_status=F("invoice__status")
    ).exclude(
        Exists(BackfillDeviation.objects.filter(invoice_id=OuterRef("invoice_id"), kind=BackfillDeviation.Kind.STATUS_CHANGED))
    )
    unexplained_count = unexplained.count()
    examples = differences + [
        {"kind": "status change without deviation", **row}
        for row in (
            _examples(unexplained, "invoice_id", "invoice__number", "legacy_status", "invoice__status")
            if unexplained_count
            else []
        )
    ]
    count = len(differences) + unexplained_count
    explanation = (
        STATUS_COUNTS_DIFFERENT.format(count=count, unexplained=unexplained_count)
        if count
        else STATUS_COUNTS_OK.format(moved=moved)
    )
    return CheckResult(
        name="baseline_status_counts", ok=count == 0, count=count, explanation=explanation, examples=examples[:MAX_EXAMPLES]
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
    return CheckResult(
        name="baseline_fin02_rows",
        ok=count == 0,
        count=count,
        explanation=FIN02_DIFFERENT.format(count=count) if count else FIN02_OK.format(rows=rows_compared),
        examples=differences[:MAX_EXAMPLES],
    )


def baseline_checks(*, baseline: dict, tenant: Tenant | None) -> list[CheckResult]:
    """Compare today's figures, computed for the baseline's `asOf` day, with the baseline's."""
    as_of = date.fromisoformat(baseline["asOf"])
    current = baseline_document(tenant=tenant, today=as_of)
    return [
        compare_fin01_totals(baseline=baseline, current=current),
        compare_unapplied_credit(baseline=baseline, current=current, tenant=tenant),
        compare_status_counts(baseline=baseline, current=current, tenant=tenant),
        compare_fin02_rows(baseline=baseline, today=as_of),
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
    *, tenant: Tenant | None, today: date, allow_partial: bool = False, baseline: dict | None = None
) -> list[CheckResult]:
    """Every invariant check, then the baseline comparison if there is a baseline, on one snapshot.
    First, the tables it reads whose planner statistics are missing or stale are ANALYZEd (right after
    a backfill they may never have been): the checks' plans must not depend on autovacuum's timing."""
    analyze(VERIFY_TABLES, only_stale=True)
    with one_snapshot():
        checks = invariant_checks(tenant=tenant, today=today, allow_partial=allow_partial)
        if baseline is not None:
            checks += baseline_checks(baseline=baseline, tenant=tenant)
    return checks
