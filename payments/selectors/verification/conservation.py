"""Invariant 7 (the backfill conserves money), its one exception (payments in a foreign currency
wait for a person), and migration progress."""
from collections import defaultdict

from django.db.models import Exists, F, OuterRef, Q, Sum

from billing.models import Invoice, Tenant
from payments.domain.backfill import SYNTHETIC_KEY_PREFIX
from payments.models import Allocation, AuditEvent, Channel, Credit, InvoiceMigration, LegacyPaymentStatus, Payment
from payments.selectors.verification.messages import (
    CONSERVATION_BROKEN,
    CONSERVATION_OK,
    MIGRATION_COMPLETE,
    MIGRATION_HIDDEN_ALLOCATIONS,
    MIGRATION_INCOMPLETE,
    MIGRATION_PARTIAL_ALLOWED,
    NEEDS_A_PERSON,
    NEEDS_A_PERSON_NONE,
    NEEDS_A_PERSON_PLACED,
)
from payments.selectors.verification.result import (
    CheckResult,
    check_result,
    examples_of,
    raw_violations,
    scoped,
    sum_of,
    tenant_sql,
)


def _currency_mismatch() -> Q:
    return ~Q(currency=F("tenant__currency"))


def legacy_paid_versus_backfilled(*, tenant: Tenant | None = None) -> dict[str, tuple[int, int]]:
    """Per tenant: (sum of legacy paid figures of migrated invoices, sum of backfilled allocations)."""
    legacy = scoped(InvoiceMigration.objects.all(), tenant, "invoice__tenant").values("invoice__tenant_id").annotate(
        total=Sum("legacy_paid_cents")
    ).order_by()
    allocated = scoped(Allocation.objects.filter(backfilled=True), tenant).values("tenant_id").annotate(
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
    where, tenant_params = tenant_sql(tenant, "p.tenant_id")
    params = [
        True, True, LegacyPaymentStatus.SUCCEEDED, Channel.LEGACY, f"{SYNTHETIC_KEY_PREFIX}%",
        AuditEvent.PAYMENT_VERIFIED, False, *tenant_params,
    ]
    return raw_violations(_UNPLACED_PAYMENTS_SQL + where, params, UNPLACED_PAYMENT_COLUMNS)


def check_backfill_conservation(*, tenant: Tenant | None = None) -> CheckResult:
    totals = legacy_paid_versus_backfilled(tenant=tenant)
    unequal = {tenant_id: pair for tenant_id, pair in totals.items() if pair[0] != pair[1]}
    where, tenant_params = tenant_sql(tenant, "i.tenant_id")
    invoice_count, invoice_examples = raw_violations(
        _UNCONSERVED_INVOICES_SQL + where, [True, *tenant_params], UNCONSERVED_INVOICE_COLUMNS
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
    return check_result("backfill_conserves_money", count=count, explanation=explanation, examples=examples)


def check_currency_mismatch_payments(*, tenant: Tenant | None = None) -> CheckResult:
    """Invariant 7's exception: payments in a foreign currency wait for a person. Reported, not a failure."""
    mismatched = scoped(Payment.objects.all(), tenant).filter(_currency_mismatch())
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
        backfill_allocated_cents=sum_of(Allocation.objects.filter(backfilled=True, payment_id=OuterRef("pk")), "payment_id"),
        backfill_credited_cents=sum_of(Credit.objects.filter(backfilled=True, source_payment_id=OuterRef("pk")), "source_payment_id"),
    )
    examples = examples_of(
        with_placement, "id", "tenant_id", "invoice_id", "amount_cents", "currency", "tenant__currency", "status",
        "backfill_allocated_cents", "backfill_credited_cents",
    ) if count else []
    return check_result(
        "currency_mismatch_needs_a_person", count=count, ok=placed == 0, explanation=explanation, examples=examples
    )


# Migration progress -----------------------------------------------------------------------------
def check_migration_complete(*, tenant: Tenant | None = None, allow_partial: bool = False) -> CheckResult:
    unmigrated = scoped(Invoice.objects.all(), tenant).filter(
        ~Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))
    )
    unmapped = scoped(Payment.objects.all(), tenant).filter(verification_status__isnull=True)
    hidden = scoped(Allocation.objects.filter(reversal__isnull=True), tenant).filter(
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
        examples += [{"kind": "allocation on unmigrated invoice", **row} for row in examples_of(hidden, "id", "invoice_id", "amount_cents")]
    if invoices:
        examples += [{"kind": "unmigrated invoice", **row} for row in examples_of(unmigrated, "id", "tenant_id", "number", "status")]
    if payments:
        examples += [{"kind": "unmapped payment", **row} for row in examples_of(unmapped, "id", "tenant_id", "status")]
    return check_result(
        "migration_complete", count=invoices + payments + hidden_count, ok=ok,
        explanation="; ".join(parts) or MIGRATION_COMPLETE, examples=examples,
    )
