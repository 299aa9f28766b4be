"""The money rules in SQL: every fragment once, composed by the guards (`guards_v3`), the read model
(`figures_v2`), the selectors and verification (`payments/selectors/verification/`).

Their Python twins live in `payments.domain` (`money`, `status`, `orphans`); `tests/payments/domain/`
and `tests/payments/selectors/` run both over generated ledgers and assert equal answers
(docs/architecture.md has the table rule → Python home → SQL home → twin test).

Aliases every fragment assumes (the queries that compose them use these):
`a` payments_allocation, `r` payments_allocationreversal (LEFT JOINed on `REVERSAL_JOIN`),
`i` billing_invoice, `p` payments_payment, `c` payments_credit, `f` payments_refund,
`m` payments_invoicemigration.

The landed versions (`guards_v2`, `figures_v1`) keep their own literal text and never change; a
version composed from these fragments would change silently if a fragment did, so
`tests/payments/database/test_landed_versions.py` pins each version's rendered SQL (sha256): a
fragment edit that changes a landed version fails there, and the change belongs in a new version.

Plain ANSI SQL unless marked "PostgreSQL": what SQLite also runs is twin-tested there too.
"""
from payments.domain import status as engine

# --- allocations -----------------------------------------------------------------------------
# An allocation is active until reversed (SPEC: reversal is a row of its own, history is kept).
ACTIVE_ALLOCATION = "NOT EXISTS (SELECT 1 FROM payments_allocationreversal r WHERE r.allocation_id = a.id)"
# The same rule where the reversal is LEFT JOINed (grouped passes that also need reversed rows).
REVERSAL_JOIN = "LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id"
NOT_REVERSED = "r.allocation_id IS NULL"

# Money that PAYS an invoice (the status engine's paid figure, FIN-01/FIN-02's paid): an active
# allocation of a VERIFIED payment or of a credit.
PAYS_INVOICE = "a.credit_id IS NOT NULL OR p.verification_status = 'VERIFIED'"
# Money PENDING on an invoice: an active allocation of a PENDING payment (reduces the balance, not the outstanding).
PENDING_ON_INVOICE = "p.verification_status = 'PENDING'"
# Money COUNTED AGAINST an invoice's amount (invariant 3, the guard): every active allocation but a
# REJECTED payment's, so legacy rows whose verification status is still NULL count too. A different
# figure from the paid one on purpose: it bounds what may be applied, it does not say what is paid.
COUNTED_AGAINST_INVOICE = "a.credit_id IS NOT NULL OR p.verification_status IS DISTINCT FROM 'REJECTED'"

# An active allocation whose invoice, payment or credit sits in another tenant or currency
# (the allocation is the only source; `p` or `c` is NULL for the other kind).
ALLOCATION_CROSSES = (
    "a.tenant_id <> i.tenant_id"
    " OR coalesce(p.tenant_id, c.tenant_id) <> i.tenant_id"
    " OR coalesce(p.currency, c.currency) <> i.currency"
)
# Its invoice, payment or credit is gone (LEFT JOINs that found nothing).
ALLOCATION_PARENT_MISSING = (
    "i.id IS NULL"
    " OR (a.payment_id IS NOT NULL AND p.id IS NULL)"
    " OR (a.credit_id IS NOT NULL AND c.id IS NULL)"
)
# Orphan (SPEC invariant 4, `pay10_verify`, `pay10_cleanup_orphans`, the backfill's summary): an
# allocation whose invoice, payment or credit is missing (reversed or not: its rows lead nowhere), or
# an ACTIVE one that crosses tenants or currencies. A reversed crossing allocation is history, not an
# orphan: its money counts nowhere, the guard lets the invoice's later allocations through, and
# `pay10_cleanup_orphans` neutralises a crossing allocation precisely by reversing it.
ORPHAN = f"{ALLOCATION_PARENT_MISSING} OR ({NOT_REVERSED} AND ({ALLOCATION_CROSSES}))"
ORPHAN_JOINS = (
    f"{REVERSAL_JOIN}\n"
    "LEFT JOIN billing_invoice i ON i.id = a.invoice_id\n"
    "LEFT JOIN payments_payment p ON p.id = a.payment_id\n"
    "LEFT JOIN payments_credit c ON c.id = a.credit_id"
)

# --- payments and credits --------------------------------------------------------------------
# A refund of a payment's unallocated money (a refund out of one of its credits has its credit set).
REFUND_OF_UNALLOCATED = "f.credit_id IS NULL"

# A payment's usage, one row per use: (payment_id, allocated, credited, refunded). Its sum may not
# exceed the payment's amount (SPEC invariant 1); the rest is its unallocated money.
PAYMENT_USES = f"""SELECT a.payment_id, a.amount_cents AS allocated, 0 AS credited, 0 AS refunded
        FROM payments_allocation a WHERE a.payment_id IS NOT NULL AND {ACTIVE_ALLOCATION}
        UNION ALL
        SELECT c.source_payment_id, 0, c.amount_cents, 0 FROM payments_credit c WHERE c.source_payment_id IS NOT NULL
        UNION ALL
        SELECT f.payment_id, 0, 0, f.amount_cents FROM payments_refund f WHERE {REFUND_OF_UNALLOCATED}"""

# A credit's usage, one row per use: (credit_id, applied, refunded) (SPEC invariant 2).
CREDIT_USES = f"""SELECT a.credit_id, a.amount_cents AS applied, 0 AS refunded
        FROM payments_allocation a WHERE a.credit_id IS NOT NULL AND {ACTIVE_ALLOCATION}
        UNION ALL
        SELECT f.credit_id, 0, f.amount_cents FROM payments_refund f WHERE f.credit_id IS NOT NULL"""

# --- invoices --------------------------------------------------------------------------------
_LEGACY_OPEN = ", ".join(f"'{status}'" for status in (engine.ISSUED, engine.PARTIALLY_PAID, engine.OVERDUE))
# The paid figure a legacy (not yet migrated) invoice stands for (`engine.legacy_paid_cents`). PostgreSQL
# (least/greatest); the ORM twin is `payments.selectors.balances.legacy_paid_expression`.
LEGACY_PAID = (
    f"CASE WHEN i.status = '{engine.PAID}' THEN i.amount_cents\n"
    f"                            WHEN i.status IN ({_LEGACY_OPEN})\n"
    "                                THEN least(greatest(i.amount_paid_cents, 0), i.amount_cents)\n"
    "                            ELSE 0 END"
)

# The read model's money state (`FiguresState`): what the status engine's verdict depends on besides
# the due date, given the invoice's paid figure `{paid}`.
_EXPLICIT = ", ".join(f"'{status}'" for status in sorted(engine.EXPLICIT_STATUSES))


def money_state(paid: str) -> str:
    return (
        f"CASE WHEN i.status IN ({_EXPLICIT}) THEN i.status\n"
        f"                        WHEN {paid} >= i.amount_cents THEN 'PAID'\n"
        f"                        WHEN {paid} > 0 THEN 'PART'\n"
        "                        ELSE 'UNPAID' END"
    )


def status_verdict(paid: str, today: str) -> str:
    """The status engine's verdict (`engine.invoice_status`) for invoice `i`, given SQL for its paid
    cents and for today's date."""
    return (
        f"CASE WHEN i.status IN ({_EXPLICIT}) THEN i.status"
        f" WHEN {paid} >= i.amount_cents THEN '{engine.PAID}'"
        f" WHEN i.due_date IS NOT NULL AND i.due_date < {today} THEN '{engine.OVERDUE}'"
        f" WHEN {paid} > 0 THEN '{engine.PARTIALLY_PAID}'"
        f" ELSE '{engine.ISSUED}' END"
    )


# The rollup's key for "no due date" (a key column cannot be NULL); `payments.models.NO_DUE_DAY`
# is tied to it by a test.
NO_DUE_DAY = "9999-12-31"
NO_DUE_DAY_SQL = f"DATE '{NO_DUE_DAY}'"

# Receivables aging: the bucket of an invoice's due date `{due}` on `{today}` (SQL dates, `{today}`
# minus N days given as parameters by the caller: `aging_bucket_sql(due, today, minus)` where
# `minus(n)` renders "today - n days" for the database at hand). Python twin:
# `payments.domain.aging.aging_bucket`.
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")


def aging_bucket_sql(due: str, today: str, minus) -> str:
    return (
        f"CASE WHEN {due} IS NULL OR {due} = '{NO_DUE_DAY}' OR {due} >= {today} THEN 'current'"
        f" WHEN {due} >= {minus(30)} THEN '1-30'"
        f" WHEN {due} >= {minus(60)} THEN '31-60'"
        f" WHEN {due} >= {minus(90)} THEN '61-90'"
        " ELSE '90+' END"
    )

# --- FIN-01's tenant balances (`balances_v1`) -------------------------------------------------
# Pending verification: payment `p` awaits verification (a legacy row keeps its legacy status until
# the backfill maps it). The ORM twin is FIN-01's `is_pending` (`billing/selectors/finance.py`).
PENDING_VERIFICATION = "p.verification_status = 'PENDING' OR (p.verification_status IS NULL AND p.status = 'PENDING')"
# A credit holds money unless its source payment `p` (LEFT JOINed: NULL for a credit with no source)
# was rejected (the ORM twin is `credits_with_balances`' `remaining_cents`).
CREDIT_HOLDS = "p.verification_status IS DISTINCT FROM 'REJECTED'"
