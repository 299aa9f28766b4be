"""PostgreSQL keeps `payments_invoicefigures` and `payments_invoicerollup` (the read model of FIN-01
and FIN-02) exact, at the commit of every transaction that changes an invoice's figures, whoever
writes: the services, the backfill, the admin, or raw SQL of another program. Installed by
`0004_invoice_figures`, removed by its reverse; `0006_pay10_database_code` brings a database of an
earlier main to it. Figures v1, a landed version: never edited; a change is `figures_v2` and a new
migration (`payments/database/__init__.py`).

How (the same shape as `guards_v2.py`):
- statement-level AFTER triggers with transition tables note the invoice ids a statement may have
  changed the figures of, as one array per statement, in the session's temporary table
  `pay10_figures_touched`: an invoice inserted, deleted, or updated in a column the figures read
  (tenant, currency, amount, legacy paid, status, due date, issue or creation time); the invoice of an
  allocation inserted or deleted, and of a reversal inserted or deleted; the invoice of a migration
  marker inserted or deleted; a payment whose verification status changed ('p': every invoice it is
  allocated to, resolved at commit);
- the first note of a transaction inserts its row into `pay10_figures_pending`, whose deferred
  constraint trigger fires once, at COMMIT, and calls `pay10_figures_refresh(ids)`.

`pay10_figures_refresh(ids)` recomputes those invoices' figures from the truth, with the same
definitions as `payments.selectors.balances.invoices_with_balances` (an invoice the backfill has not
reached counts with its legacy paid figure), writes the ones that changed, and adds the difference
between the old and the new figures to the rollup rows (by issue and due day, and by due day
alone: `payments_invoiceduerollup`) and to the per-block invoice counts
(`payments_invoiceblock`: a tenant's invoices per 1,024 ids, INSERT .. ON CONFLICT DO UPDATE, in key
order). Refreshers of the same invoices take turns on transaction-scoped advisory locks, one per
bucket of 1,024 ids taken in ascending order, so each computes its difference from what the previous
one committed (READ COMMITTED: the statement after the locks sees it). Tests hold the figures equal
to the live computation; `pay10_verify` checks them; `pay10_rebuild_figures` rebuilds them.

Days are UTC days (`issue_day`); readers use the rollup only when `TIME_ZONE` is UTC.
"""
from payments.database import DatabaseCode

TOUCHED = "pg_temp.pay10_figures_touched"
LOCK_NAMESPACE = 20641  # first key of the (int, int) advisory locks; the backfill uses the bigint form
BUCKET_BITS = 10
NO_DUE_DAY = "DATE '9999-12-31'"

PENDING_TABLE = """
CREATE UNLOGGED TABLE IF NOT EXISTS pay10_figures_pending (
    xact xid8 PRIMARY KEY
);
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
    -- Reach every row by index probes from these ids, never by scanning a whole table: the cost of a
    -- refresh follows the number of invoices it refreshes, not the size of the ledger (reset below).
    PERFORM set_config('enable_hashjoin', 'off', true);
    PERFORM set_config('enable_mergejoin', 'off', true);
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM pg_advisory_xact_lock({LOCK_NAMESPACE}, bucket)
    FROM (SELECT DISTINCT (id >> {BUCKET_BITS})::int AS bucket FROM unnest(p_ids) AS ids(id) ORDER BY 1) buckets;
    -- EXECUTE plans for this call's ids (a cached plan would keep the first call's).
    EXECUTE $q$
        WITH fresh AS MATERIALIZED (
            SELECT i.id AS invoice_id, i.tenant_id, i.currency, i.amount_cents, i.due_date,
                   (coalesce(i.issued_at, i.created_at) AT TIME ZONE 'UTC')::date AS issue_day,
                   v.paid_cents, v.pending_cents,
                   CASE WHEN i.status IN ('DRAFT', 'VOID') THEN i.status
                        WHEN v.paid_cents >= i.amount_cents THEN 'PAID'
                        WHEN v.paid_cents > 0 THEN 'PART'
                        ELSE 'UNPAID' END AS state
            FROM billing_invoice i
            LEFT JOIN payments_invoicemigration m ON m.invoice_id = i.id
            LEFT JOIN (
                -- active allocations: verified payments and credit are paid, pending payments pending
                SELECT a.invoice_id,
                       sum(a.amount_cents) FILTER (
                           WHERE a.credit_id IS NOT NULL OR p.verification_status = 'VERIFIED') AS paid,
                       sum(a.amount_cents) FILTER (WHERE p.verification_status = 'PENDING') AS pending
                FROM payments_allocation a
                LEFT JOIN payments_payment p ON p.id = a.payment_id
                WHERE a.invoice_id = ANY ($1)
                  AND NOT EXISTS (SELECT 1 FROM payments_allocationreversal r WHERE r.allocation_id = a.id)
                GROUP BY a.invoice_id
            ) s ON s.invoice_id = i.id
            CROSS JOIN LATERAL (
                SELECT CASE WHEN m.invoice_id IS NOT NULL THEN coalesce(s.paid, 0)
                            -- not migrated yet: the legacy paid figure
                            WHEN i.status = 'PAID' THEN i.amount_cents
                            WHEN i.status IN ('ISSUED', 'PARTIALLY_PAID', 'OVERDUE')
                                THEN least(greatest(i.amount_paid_cents, 0), i.amount_cents)
                            ELSE 0 END AS paid_cents,
                       CASE WHEN m.invoice_id IS NOT NULL THEN coalesce(s.pending, 0) ELSE 0 END AS pending_cents
            ) v
            WHERE i.id = ANY ($1)
        ),
        old AS (
            SELECT f.* FROM payments_invoicefigures f WHERE f.invoice_id = ANY ($1)
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
            WHERE f.invoice_id = ANY ($1) AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.invoice_id = f.invoice_id)
        ),
        delta AS (
            SELECT tenant_id, currency, state, issue_day, due_day,
                   sum(n) AS n, sum(amount_cents) AS amount_cents, sum(paid_cents) AS paid_cents
            FROM (
                SELECT tenant_id, currency, state, issue_day, coalesce(due_date, {NO_DUE_DAY}) AS due_day,
                       1 AS n, amount_cents, paid_cents
                FROM fresh
                UNION ALL
                SELECT tenant_id, currency, state, issue_day, coalesce(due_date, {NO_DUE_DAY}),
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
    $q$ USING p_ids;
    PERFORM set_config('enable_hashjoin', v_hashjoin, true);
    PERFORM set_config('enable_mergejoin', v_mergejoin, true);
    PERFORM set_config('enable_seqscan', v_seqscan, true);
END;
$$;
"""

NOTE = f"""
CREATE OR REPLACE FUNCTION pay10_figures_note(p_kind "char", p_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;
    IF to_regclass('{TOUCHED}') IS NULL THEN
        CREATE TEMPORARY TABLE pay10_figures_touched (kind "char" NOT NULL, ids bigint[] NOT NULL);
    END IF;
    INSERT INTO {TOUCHED} (kind, ids) VALUES (p_kind, p_ids);
    INSERT INTO pay10_figures_pending (xact) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_figures_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    IF to_regclass('{TOUCHED}') IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT x.id), '{{}}') INTO v_ids
        FROM (
            SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'i'
            UNION ALL
            SELECT a.invoice_id FROM payments_allocation a
            WHERE a.payment_id = ANY (ARRAY(SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'p'))
        ) x;
        PERFORM pay10_figures_refresh(v_ids);
        DELETE FROM {TOUCHED};
    END IF;
    DELETE FROM pay10_figures_pending WHERE xact = NEW.xact;
    RETURN NULL;
END;
$$;
"""

# name: (table, event, transition table, SQL giving the noted ids, kind)
_NOTERS = {
    "pay10_figures_invoice_insert": ("billing_invoice", "INSERT", "NEW", "SELECT array_agg(id) FROM pay10_rows", "i"),
    "pay10_figures_invoice_delete": ("billing_invoice", "DELETE", "OLD", "SELECT array_agg(id) FROM pay10_rows", "i"),
    "pay10_figures_allocation_insert": (
        "payments_allocation", "INSERT", "NEW", "SELECT array_agg(invoice_id) FROM pay10_rows", "i"
    ),
    "pay10_figures_allocation_delete": (
        "payments_allocation", "DELETE", "OLD", "SELECT array_agg(invoice_id) FROM pay10_rows", "i"
    ),
    "pay10_figures_reversal_insert": (
        "payments_allocationreversal", "INSERT", "NEW",
        "SELECT array_agg(a.invoice_id) FROM pay10_rows r JOIN payments_allocation a ON a.id = r.allocation_id", "i",
    ),
    "pay10_figures_reversal_delete": (
        "payments_allocationreversal", "DELETE", "OLD",
        "SELECT array_agg(a.invoice_id) FROM pay10_rows r JOIN payments_allocation a ON a.id = r.allocation_id", "i",
    ),
    "pay10_figures_migration_insert": (
        "payments_invoicemigration", "INSERT", "NEW", "SELECT array_agg(invoice_id) FROM pay10_rows", "i"
    ),
    "pay10_figures_migration_delete": (
        "payments_invoicemigration", "DELETE", "OLD", "SELECT array_agg(invoice_id) FROM pay10_rows", "i"
    ),
}

# UPDATE triggers see both transition tables and note only the rows whose figure columns changed.
_INVOICE_COLUMNS = "tenant_id, currency, amount_cents, amount_paid_cents, status, due_date, issued_at, created_at"
_UPDATERS = {
    "pay10_figures_invoice_update": (
        "billing_invoice",
        f"SELECT array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id "
        f"WHERE (n.{_INVOICE_COLUMNS.replace(', ', ', n.')}) IS DISTINCT FROM (o.{_INVOICE_COLUMNS.replace(', ', ', o.')})",
        "i",
    ),
    "pay10_figures_payment_update": (
        "payments_payment",
        "SELECT array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id "
        "WHERE n.verification_status IS DISTINCT FROM o.verification_status",
        "p",
    ),
}


def _function(name: str, ids_sql: str, kind: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n    PERFORM pay10_figures_note('{kind}', ({ids_sql}));\n    RETURN NULL;\nEND;\n$$;"
    )


def _statements() -> list[tuple[str, str, str]]:
    """(trigger name, table, [function SQL, trigger SQL]) for every noting trigger."""
    made = []
    for name, (table, event, transition, ids_sql, kind) in _NOTERS.items():
        function = _function(name, ids_sql, kind)
        trigger = (
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} TABLE AS pay10_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
        made.append((name, table, function, trigger))
    for name, (table, ids_sql, kind) in _UPDATERS.items():
        function = _function(name, ids_sql, kind)
        trigger = (
            f"CREATE TRIGGER {name} AFTER UPDATE ON {table} REFERENCING OLD TABLE AS pay10_old NEW TABLE AS pay10_new "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
        made.append((name, table, function, trigger))
    return made


FLUSH_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER pay10_figures_flush AFTER INSERT ON pay10_figures_pending "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pay10_figures_flush()"
)


def figures_install(apps, schema_editor) -> None:
    """Install the upkeep and ask for a build (`0005_invoice_figures_build` runs it): until the build
    is done, readers compute live."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(PENDING_TABLE, params=None)
    schema_editor.execute(REFRESH, params=None)
    schema_editor.execute(NOTE, params=None)
    for name, table, function, trigger in _statements():
        schema_editor.execute(function, params=None)
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        schema_editor.execute(trigger)
    schema_editor.execute("DROP TRIGGER IF EXISTS pay10_figures_flush ON pay10_figures_pending")
    schema_editor.execute(FLUSH_TRIGGER)
    apps.get_model("payments", "InvoiceFiguresBuild").objects.using(schema_editor.connection.alias).create()


def figures_remove(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, _function_sql, _trigger in _statements():
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()")
    schema_editor.execute("DROP TABLE IF EXISTS pay10_figures_pending")
    for function in ("pay10_figures_flush()", "pay10_figures_note(\"char\", bigint[])", "pay10_figures_refresh(bigint[])"):
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {function}")


def _code() -> DatabaseCode:
    statements = _statements()
    return DatabaseCode(
        name="figures v1",
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
