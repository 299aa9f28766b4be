"""Figures v3: the read model's upkeep of figures v2 (`figures_v2.py`, and `figures_v1.py` for what it
keeps and how), with the refresh's plan chosen by the number of invoices it refreshes (issue 14).

v1 and v2 force index probes for every refresh (`enable_hashjoin`, `enable_mergejoin`,
`enable_seqscan` off): right for a commit touching a few invoices, whose cost must follow those
invoices and never the ledger, but a quadratic plan for thousands (the allocations' aggregate is
rescanned for every invoice: 274 s for 20,000 ids at 300k invoices, 3.6 s planned). v3 forces the
probes only below `PROBE_LIMIT` ids and lets the planner choose (hash joins) from there on.

The refresh is one statement, `refresh_sql(ids)`, rendered here once: the function runs it with
`$1`, and the one-time build (`payments.services.figures.figures_build`) runs the very same text with
its batch's ids as a parameter, after the same advisory locks (`locks_sql(ids)`), so a build is fast
whichever version of the function is installed (on a fresh `migrate`, 0005 builds under v1). The
noting triggers and functions are v1's. Installed by `0012_figures_refresh_plan`.

A landed version once installed: `tests/payments/database/test_landed_versions.py` pins its
rendered SQL; a change belongs in `figures_v4`.
"""
from payments.database import DatabaseCode, rules
from payments.database.figures_v1 import BUCKET_BITS, FLUSH_TRIGGER, LOCK_NAMESPACE, NOTE, PENDING_TABLE, _statements

# From this many ids on, the planner chooses the refresh's plan; below it, index probes are forced.
# Measured at 300k invoices (median of 5, ms, forced vs planner's choice, machine loaded ~6 on 2
# cores): 1 id 12.6 vs 9.7; 10: 10.9 vs 9.9; 50: 14.8 vs 10.9; 100: 38 vs 26; 200: 56 vs 44;
# 1,000: 663 vs 89; 20,000: 274 s vs 3.6 s (forced, the allocations' aggregate is rescanned per
# invoice: 192 M rows through a join filter). With fresh statistics the planner probes by itself for
# a few ids; forcing below the limit keeps that true when the statistics are stale (a read model
# just built, a table that grew since the last ANALYZE), where it costs nothing measurable.
PROBE_LIMIT = 100


def locks_sql(ids: str) -> str:
    """The advisory lock of every bucket of 1,024 ids among `ids` (SQL for a bigint[]), taken in
    ascending order: refreshers of the same invoices take turns (figures v1). To follow SELECT or PERFORM."""
    return (
        f"pg_advisory_xact_lock({LOCK_NAMESPACE}, bucket) "
        f"FROM (SELECT DISTINCT (id >> {BUCKET_BITS})::int AS bucket FROM unnest({ids}) AS ids(id) ORDER BY 1) buckets"
    )


def refresh_sql(ids: str) -> str:
    """Recompute the figures of the invoices in `ids` (SQL for a bigint[]), write the changed ones and
    add the difference to the rollups and the block counts: one statement (figures v1's docstring)."""
    return f"""
    WITH fresh AS MATERIALIZED (
        SELECT i.id AS invoice_id, i.tenant_id, i.currency, i.amount_cents, i.due_date,
               (coalesce(i.issued_at, i.created_at) AT TIME ZONE 'UTC')::date AS issue_day,
               v.paid_cents, v.pending_cents,
               {rules.money_state("v.paid_cents")} AS state
        FROM billing_invoice i
        LEFT JOIN payments_invoicemigration m ON m.invoice_id = i.id
        LEFT JOIN (
            -- active allocations: verified payments and credit are paid, pending payments pending
            SELECT a.invoice_id,
                   sum(a.amount_cents) FILTER (WHERE {rules.PAYS_INVOICE}) AS paid,
                   sum(a.amount_cents) FILTER (WHERE {rules.PENDING_ON_INVOICE}) AS pending
            FROM payments_allocation a
            LEFT JOIN payments_payment p ON p.id = a.payment_id
            WHERE a.invoice_id = ANY ({ids})
              AND {rules.ACTIVE_ALLOCATION}
            GROUP BY a.invoice_id
        ) s ON s.invoice_id = i.id
        CROSS JOIN LATERAL (
            SELECT CASE WHEN m.invoice_id IS NOT NULL THEN coalesce(s.paid, 0)
                        -- not migrated yet: the legacy paid figure
                        ELSE {rules.LEGACY_PAID} END AS paid_cents,
                   CASE WHEN m.invoice_id IS NOT NULL THEN coalesce(s.pending, 0) ELSE 0 END AS pending_cents
        ) v
        WHERE i.id = ANY ({ids})
    ),
    old AS (
        SELECT f.* FROM payments_invoicefigures f WHERE f.invoice_id = ANY ({ids})
    ),
    written AS (
        INSERT INTO payments_invoicefigures AS f
            (invoice_id, tenant_id, currency, state, issue_day, due_date, amount_cents, paid_cents, pending_cents)
        SELECT invoice_id, tenant_id, currency, state, issue_day, due_date, amount_cents, paid_cents, pending_cents
        FROM fresh
        ON CONFLICT (invoice_id) DO UPDATE SET
            tenant_id = EXCLUDED.tenant_id, currency = EXCLUDED.currency, state = EXCLUDED.state,
            issue_day = EXCLUDED.issue_day, due_date = EXCLUDED.due_date, amount_cents = EXCLUDED.amount_cents,
            paid_cents = EXCLUDED.paid_cents, pending_cents = EXCLUDED.pending_cents
        WHERE (f.tenant_id, f.currency, f.state, f.issue_day, f.due_date, f.amount_cents, f.paid_cents, f.pending_cents)
            IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.currency, EXCLUDED.state, EXCLUDED.issue_day,
                              EXCLUDED.due_date, EXCLUDED.amount_cents, EXCLUDED.paid_cents, EXCLUDED.pending_cents)
    ),
    blocks AS (
        INSERT INTO payments_invoiceblock AS b (tenant_id, block, invoice_count)
        SELECT tenant_id, block, n
        FROM (
            SELECT tenant_id, invoice_id >> {BUCKET_BITS} AS block, sum(n) AS n
            FROM (
                SELECT tenant_id, invoice_id, 1 AS n FROM fresh
                UNION ALL
                SELECT tenant_id, invoice_id, -1 FROM old
            ) moved
            GROUP BY 1, 2
            HAVING sum(n) <> 0
        ) changes
        ORDER BY tenant_id, block
        ON CONFLICT (tenant_id, block) DO UPDATE SET invoice_count = b.invoice_count + EXCLUDED.invoice_count
    ),
    removed AS (
        DELETE FROM payments_invoicefigures f
        WHERE f.invoice_id = ANY ({ids}) AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.invoice_id = f.invoice_id)
    ),
    delta AS (
        SELECT tenant_id, currency, state, issue_day, due_day,
               sum(n) AS n, sum(amount_cents) AS amount_cents, sum(paid_cents) AS paid_cents
        FROM (
            SELECT tenant_id, currency, state, issue_day, coalesce(due_date, {rules.NO_DUE_DAY_SQL}) AS due_day,
                   1 AS n, amount_cents, paid_cents
            FROM fresh
            UNION ALL
            SELECT tenant_id, currency, state, issue_day, coalesce(due_date, {rules.NO_DUE_DAY_SQL}),
                   -1, -amount_cents, -paid_cents
            FROM old
        ) changes
        GROUP BY tenant_id, currency, state, issue_day, due_day
        HAVING sum(n) <> 0 OR sum(amount_cents) <> 0 OR sum(paid_cents) <> 0
    ),
    by_due AS (
        INSERT INTO payments_invoiceduerollup AS d
            (tenant_id, currency, state, due_day, invoice_count, amount_cents, paid_cents)
        SELECT tenant_id, currency, state, due_day, sum(n), sum(amount_cents), sum(paid_cents)
        FROM delta
        GROUP BY tenant_id, currency, state, due_day
        HAVING sum(n) <> 0 OR sum(amount_cents) <> 0 OR sum(paid_cents) <> 0
        ORDER BY tenant_id, currency, state, due_day
        ON CONFLICT (tenant_id, currency, state, due_day) DO UPDATE SET
            invoice_count = d.invoice_count + EXCLUDED.invoice_count,
            amount_cents = d.amount_cents + EXCLUDED.amount_cents,
            paid_cents = d.paid_cents + EXCLUDED.paid_cents
    )
    INSERT INTO payments_invoicerollup AS r
        (tenant_id, currency, state, issue_day, due_day, invoice_count, amount_cents, paid_cents)
    SELECT tenant_id, currency, state, issue_day, due_day, n, amount_cents, paid_cents
    FROM delta
    ORDER BY tenant_id, currency, state, issue_day, due_day
    ON CONFLICT (tenant_id, currency, state, issue_day, due_day) DO UPDATE SET
        invoice_count = r.invoice_count + EXCLUDED.invoice_count,
        amount_cents = r.amount_cents + EXCLUDED.amount_cents,
        paid_cents = r.paid_cents + EXCLUDED.paid_cents
"""


REFRESH = f"""
CREATE OR REPLACE FUNCTION pay10_figures_refresh(p_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_hashjoin text := current_setting('enable_hashjoin');
    v_mergejoin text := current_setting('enable_mergejoin');
    v_seqscan text := current_setting('enable_seqscan');
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_ids) < {PROBE_LIMIT} THEN
        -- A few invoices: reach every row by index probes from these ids, never by scanning a whole
        -- table, whatever the statistics say: the cost follows the ids, not the ledger (reset below).
        PERFORM set_config('enable_hashjoin', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
        PERFORM set_config('enable_seqscan', 'off', true);
    END IF;
    PERFORM {locks_sql("p_ids")};
    -- EXECUTE plans for this call's ids (a cached plan would keep the first call's).
    EXECUTE $q${refresh_sql("$1")}$q$ USING p_ids;
    PERFORM set_config('enable_hashjoin', v_hashjoin, true);
    PERFORM set_config('enable_mergejoin', v_mergejoin, true);
    PERFORM set_config('enable_seqscan', v_seqscan, true);
END;
$$;
"""


def _code() -> DatabaseCode:
    statements = _statements()
    return DatabaseCode(
        name="figures v3",
        setup=(PENDING_TABLE, REFRESH, NOTE, *(function for _name, _table, function, _trigger in statements)),
        triggers={
            **{name: (table, trigger) for name, table, _function, trigger in statements},
            "pay10_figures_flush": ("pay10_figures_pending", FLUSH_TRIGGER),
        },
        functions=(
            *(f"{name}()" for name, _table, _function, _trigger in statements),
            "pay10_figures_flush()", 'pay10_figures_note("char", bigint[])', "pay10_figures_refresh(bigint[])",
        ),
        tables=("pay10_figures_pending",),
    )


CODE = _code()
