"""The FIN-01/FIN-02 read model (`InvoiceFigures` and its rollups) equals the allocations, and FIN-01's
tenant balances (`TenantBalance`) equal the payments and credits, each re-derived here with the ORM,
independently of the SQL that keeps it (`payments/database/figures_v*.py`, `balances_v*.py`)."""
from datetime import UTC, date

from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from billing.models import Invoice, Tenant
from payments.database import rules
from payments.models import (
    INVOICE_BLOCK_BITS,
    NO_DUE_DAY,
    FiguresState,
    InvoiceBlock,
    InvoiceDueRollup,
    InvoiceFigures,
    InvoiceRollup,
    Payment,
    TenantBalance,
)
from payments.selectors.balances import PENDING_VERIFICATION, invoices_with_balances_grouped, unapplied_credit_by_tenant
from payments.selectors.figures import balances_ready, figures_ready
from payments.selectors.verification.messages import (
    BALANCES_ABSENT,
    BALANCES_DIFFERENT,
    BALANCES_OK,
    READ_MODEL_ABSENT,
    READ_MODEL_DIFFERENT,
    READ_MODEL_OK,
)
from payments.selectors.verification.result import (
    MAX_EXAMPLES,
    CheckResult,
    check_result,
    examples_of,
    raw_violations,
    scoped,
    tenant_sql,
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
    SELECT tenant_id, currency, state, issue_day, coalesce(due_date, {rules.NO_DUE_DAY_SQL}) AS due_day,
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
    SELECT tenant_id, currency, state, coalesce(due_date, {rules.NO_DUE_DAY_SQL}) AS due_day,
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
        return check_result("read_model_matches", count=0, explanation=READ_MODEL_ABSENT)
    mismatched = read_model_mismatches(tenant=tenant)
    invoices = mismatched.count()
    stray = scoped(InvoiceFigures.objects.filter(~Exists(Invoice.objects.filter(pk=OuterRef("invoice_id")))), tenant)
    stray_count = stray.count()
    where, tenant_params = tenant_sql(tenant, "tenant_id")
    rows, row_examples = raw_violations(
        _ROLLUP_DIFFERENT_SQL.format(tenant=where), tenant_params * 2, ROLLUP_COLUMNS
    )
    by_due, by_due_examples = raw_violations(
        _DUE_ROLLUP_DIFFERENT_SQL.format(tenant=where), tenant_params * 2, ROLLUP_COLUMNS
    )
    rows += by_due
    row_examples += by_due_examples
    blocks, block_examples = raw_violations(
        _BLOCKS_DIFFERENT_SQL.format(tenant=where), tenant_params * 2, BLOCK_COLUMNS
    )
    rows += blocks
    row_examples += block_examples
    count = invoices + stray_count + rows
    if count:
        explanation = READ_MODEL_DIFFERENT.format(invoices=invoices, stray=stray_count, rows=rows)
        examples = (
            examples_of(mismatched, "id", "tenant_id", "paid_cents", "stored_paid_cents", "pending_cents", "stored_pending_cents", "stored_state")
            + [{"invoice_id": pk, "stray": True} for pk in stray.values_list("invoice_id", flat=True)[:MAX_EXAMPLES]]
            + [{k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()} for row in row_examples]
        )[:MAX_EXAMPLES]
    else:
        explanation = READ_MODEL_OK.format(
            invoices=scoped(InvoiceFigures.objects.all(), tenant).count(),
            rows=scoped(InvoiceRollup.objects.filter(invoice_count__gt=0), tenant).count(),
        )
        examples = []
    return check_result("read_model_matches", count=count, explanation=explanation, examples=examples)


def tenant_balance_differences(*, tenant: Tenant | None = None) -> tuple[int, list[dict]]:
    """(tenant and currency pairs whose `TenantBalance` slots do not add up to the truth, examples):
    the pending verification over all time and the unapplied credit, re-derived with the ORM."""
    stored = {
        (row["tenant_id"], row["currency"]): (int(row["pending"]), int(row["credit"]))
        for row in scoped(TenantBalance.objects.all(), tenant).values("tenant_id", "currency").annotate(
            pending=Sum("pending_verification_cents"), credit=Sum("unapplied_credit_cents")
        ).order_by()
    }
    pending = {
        (row["tenant_id"], row["currency"]): row["total"]
        for row in scoped(Payment.objects.filter(PENDING_VERIFICATION), tenant).values("tenant_id", "currency").annotate(
            total=Sum("amount_cents")
        ).order_by()
    }
    credit = unapplied_credit_by_tenant(tenant=tenant)
    differences = []
    for key in sorted(set(stored) | set(pending) | set(credit)):
        live = (pending.get(key, 0), credit.get(key, 0))
        kept = stored.get(key, (0, 0))
        if kept != live:
            differences.append({
                "tenant_id": key[0], "currency": key[1],
                "stored_pending_cents": kept[0], "live_pending_cents": live[0],
                "stored_credit_cents": kept[1], "live_credit_cents": live[1],
            })
    return len(differences), differences[:MAX_EXAMPLES]


def check_tenant_balances(*, tenant: Tenant | None = None) -> CheckResult:
    if not balances_ready():
        return check_result("tenant_balances_match", count=0, explanation=BALANCES_ABSENT)
    count, examples = tenant_balance_differences(tenant=tenant)
    rows = scoped(TenantBalance.objects.all(), tenant).values("tenant_id", "currency").distinct().count()
    return check_result(
        "tenant_balances_match", count=count, ok_text=BALANCES_OK, failed_text=BALANCES_DIFFERENT, rows=rows,
        examples=examples,
    )
