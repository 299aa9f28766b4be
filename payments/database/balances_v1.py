"""Balances v1: FIN-01's per-tenant balances (pending verification over all time, unapplied credit),
kept by PostgreSQL exact at the commit of every transaction, whoever writes, the way figures v1 keeps
the invoice figures (`figures_v1.py`). Installed by `0011_tenant_balances`.

What is kept:
- `payments_balancepayment`: one row per payment awaiting verification (`rules.PENDING_VERIFICATION`)
  with its amount, tenant and currency;
- `payments_balancecredit`: one row per credit that holds money, with what it holds: its amount less
  its active applications and its refunds (`rules.CREDIT_USES`), nothing once its source payment was
  rejected (`rules.CREDIT_HOLDS`);
- `payments_tenantbalance`: their sums per (tenant, currency, slot), kept by deltas. A transaction adds
  its whole difference to one slot of each (tenant, currency), chosen by its transaction id, so
  concurrent writers of one tenant land on different rows (16 slots) instead of queueing on one hot
  row; readers add the slots up (16 rows per tenant and currency).

How (the shape of figures v1):
- statement-level AFTER triggers with transition tables note what a statement may have changed, in
  the session's temporary table `pay10_balances_touched`: 'p' a payment whose pending figure may have
  changed (inserted, deleted, or updated in a column the rule or the sums read, pending before or
  after); 'c' a credit inserted, deleted or updated, the credit of an allocation or refund inserted,
  deleted or updated, of a reversal inserted or deleted; 's' a payment that became or stopped being
  REJECTED (every credit issued from it, resolved at commit);
- the first note of a transaction queues its row in `pay10_balances_pending`, whose deferred
  constraint trigger fires once, at COMMIT, and calls `pay10_balances_refresh(payments, credits)`.

`pay10_balances_refresh` recomputes those payments' and credits' figures from the truth, writes the ones
that changed, and adds the difference to the slot. Refreshers of the same rows take turns on
transaction-scoped advisory locks (one per 64 ids, ascending), so each computes its difference from
what the previous one committed; the commit-time step runs after the figures' (it queues itself again
while `pay10_figures_pending` holds this transaction), so a transaction takes the figures' locks, then
these, never the other way round, and two commits cannot deadlock on them. The build
(`payments/services/balances.py`) runs the same refresh over every payment and credit, a batch per
transaction: each refresh sets rows to the truth whoever comes first, so the build is exact beside
concurrent commits; readers compute live until it is done.
"""
from payments.database import DatabaseCode, rules

TOUCHED = "pg_temp.pay10_balances_touched"
PAYMENT_LOCKS, CREDIT_LOCKS = 20642, 20643  # first keys of the (int, int) advisory locks (figures: 20641)
LOCK_BITS = 6
SLOTS = 16

PENDING_TABLE = """
CREATE UNLOGGED TABLE IF NOT EXISTS pay10_balances_pending (
    xact xid8 PRIMARY KEY
);
"""

REFRESH = f"""
CREATE OR REPLACE FUNCTION pay10_balances_refresh(p_payments bigint[], p_credits bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_seqscan text := current_setting('enable_seqscan');
BEGIN
    p_payments := coalesce(p_payments, '{{}}');
    p_credits := coalesce(p_credits, '{{}}');
    IF cardinality(p_payments) = 0 AND cardinality(p_credits) = 0 THEN
        RETURN;
    END IF;
    -- Index probes from these ids, never a scan of a whole table (reset below); hash joins stay on,
    -- for the anti-joins between what was kept and what is fresh (a nested loop over both is quadratic).
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM pg_advisory_xact_lock(space, bucket)
    FROM (
        SELECT DISTINCT {PAYMENT_LOCKS} AS space, (id >> {LOCK_BITS})::int AS bucket FROM unnest(p_payments) AS ids(id)
        UNION
        SELECT DISTINCT {CREDIT_LOCKS}, (id >> {LOCK_BITS})::int FROM unnest(p_credits) AS ids(id)
        ORDER BY 1, 2
    ) locks;
    -- EXECUTE: a new snapshot after the locks, planned for this call's ids.
    EXECUTE $q$
        WITH fresh_payments AS MATERIALIZED (
            SELECT p.id, p.tenant_id, p.currency, p.amount_cents AS cents
            FROM payments_payment p
            WHERE p.id = ANY ($1) AND ({rules.PENDING_VERIFICATION})
        ),
        old_payments AS MATERIALIZED (
            SELECT b.payment_id AS id, b.tenant_id, b.currency, b.pending_cents AS cents
            FROM payments_balancepayment b WHERE b.payment_id = ANY ($1)
        ),
        fresh_credits AS MATERIALIZED (
            SELECT c.id, c.tenant_id, c.currency, h.cents
            FROM payments_credit c
            LEFT JOIN payments_payment p ON p.id = c.source_payment_id
            LEFT JOIN (
                SELECT uses.credit_id, sum(uses.applied) + sum(uses.refunded) AS used
                FROM ({rules.CREDIT_USES}) uses
                WHERE uses.credit_id = ANY ($2)
                GROUP BY uses.credit_id
            ) u ON u.credit_id = c.id
            CROSS JOIN LATERAL (
                SELECT CASE WHEN {rules.CREDIT_HOLDS} THEN c.amount_cents - coalesce(u.used, 0) ELSE 0 END AS cents
            ) h
            WHERE c.id = ANY ($2) AND h.cents <> 0
        ),
        old_credits AS MATERIALIZED (
            SELECT b.credit_id AS id, b.tenant_id, b.currency, b.remaining_cents AS cents
            FROM payments_balancecredit b WHERE b.credit_id = ANY ($2)
        ),
        payments_written AS (
            INSERT INTO payments_balancepayment AS b (payment_id, tenant_id, currency, pending_cents)
            SELECT id, tenant_id, currency, cents FROM fresh_payments
            ON CONFLICT (payment_id) DO UPDATE SET
                tenant_id = EXCLUDED.tenant_id, currency = EXCLUDED.currency, pending_cents = EXCLUDED.pending_cents
            WHERE (b.tenant_id, b.currency, b.pending_cents)
                IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.currency, EXCLUDED.pending_cents)
        ),
        payments_removed AS (
            DELETE FROM payments_balancepayment b
            WHERE b.payment_id = ANY ($1) AND NOT EXISTS (SELECT 1 FROM fresh_payments f WHERE f.id = b.payment_id)
        ),
        credits_written AS (
            INSERT INTO payments_balancecredit AS b (credit_id, tenant_id, currency, remaining_cents)
            SELECT id, tenant_id, currency, cents FROM fresh_credits
            ON CONFLICT (credit_id) DO UPDATE SET
                tenant_id = EXCLUDED.tenant_id, currency = EXCLUDED.currency, remaining_cents = EXCLUDED.remaining_cents
            WHERE (b.tenant_id, b.currency, b.remaining_cents)
                IS DISTINCT FROM (EXCLUDED.tenant_id, EXCLUDED.currency, EXCLUDED.remaining_cents)
        ),
        credits_removed AS (
            DELETE FROM payments_balancecredit b
            WHERE b.credit_id = ANY ($2) AND NOT EXISTS (SELECT 1 FROM fresh_credits f WHERE f.id = b.credit_id)
        )
        INSERT INTO payments_tenantbalance AS t
            (tenant_id, currency, slot, pending_verification_cents, unapplied_credit_cents)
        SELECT tenant_id, currency, $3, sum(pending), sum(credit)
        FROM (
            SELECT tenant_id, currency, cents AS pending, 0 AS credit FROM fresh_payments
            UNION ALL
            SELECT tenant_id, currency, -cents, 0 FROM old_payments
            UNION ALL
            SELECT tenant_id, currency, 0, cents FROM fresh_credits
            UNION ALL
            SELECT tenant_id, currency, 0, -cents FROM old_credits
        ) changes
        GROUP BY tenant_id, currency
        HAVING sum(pending) <> 0 OR sum(credit) <> 0
        ORDER BY tenant_id, currency
        ON CONFLICT (tenant_id, currency, slot) DO UPDATE SET
            pending_verification_cents = t.pending_verification_cents + EXCLUDED.pending_verification_cents,
            unapplied_credit_cents = t.unapplied_credit_cents + EXCLUDED.unapplied_credit_cents
    $q$ USING p_payments, p_credits, (pg_current_xact_id()::text::bigint % {SLOTS})::int;
    PERFORM set_config('enable_seqscan', v_seqscan, true);
END;
$$;
"""

NOTE = f"""
CREATE OR REPLACE FUNCTION pay10_balances_note(p_kind "char", p_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;
    IF to_regclass('{TOUCHED}') IS NULL THEN
        CREATE TEMPORARY TABLE pay10_balances_touched (kind "char" NOT NULL, ids bigint[] NOT NULL);
    END IF;
    INSERT INTO {TOUCHED} (kind, ids) VALUES (p_kind, p_ids);
    INSERT INTO pay10_balances_pending (xact) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_balances_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_payments bigint[];
    v_credits bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM pay10_figures_pending WHERE xact = NEW.xact)
            AND current_setting('pay10.balances_requeued', true) IS DISTINCT FROM NEW.xact::text THEN
        -- The figures' step of this transaction has not run yet: queue this one behind it (one lock
        -- order), once (a figures step left deferred while this one was made immediate goes on after).
        PERFORM set_config('pay10.balances_requeued', NEW.xact::text, true);
        DELETE FROM pay10_balances_pending WHERE xact = NEW.xact;
        INSERT INTO pay10_balances_pending (xact) VALUES (NEW.xact);
        RETURN NULL;
    END IF;
    IF to_regclass('{TOUCHED}') IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT u.id), '{{}}') INTO v_payments
        FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'p';
        SELECT coalesce(array_agg(DISTINCT x.id), '{{}}') INTO v_credits
        FROM (
            SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'c'
            UNION ALL
            SELECT c.id FROM payments_credit c
            WHERE c.source_payment_id = ANY (ARRAY(SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 's'))
        ) x;
        PERFORM pay10_balances_refresh(v_payments, v_credits);
        DELETE FROM {TOUCHED};
    END IF;
    DELETE FROM pay10_balances_pending WHERE xact = NEW.xact;
    RETURN NULL;
END;
$$;
"""

_PENDING_NEW = f"({rules.PENDING_VERIFICATION.replace('p.', 'n.')})"
_PENDING_OLD = f"({rules.PENDING_VERIFICATION.replace('p.', 'o.')})"
_PAYMENT_COLUMNS = ("tenant_id", "currency", "amount_cents", "status", "verification_status")
_CREDIT_COLUMNS = ("tenant_id", "currency", "amount_cents", "source_payment_id")
_USE_COLUMNS = ("credit_id", "amount_cents")


def _changed(columns: tuple[str, ...]) -> str:
    return f"({', '.join('n.' + c for c in columns)}) IS DISTINCT FROM ({', '.join('o.' + c for c in columns)})"


def _both_sides(column: str, columns: tuple[str, ...]) -> str:
    """The `column` of the old and the new version of each updated row whose `columns` changed."""
    return (
        f"SELECT array_agg(x.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id, "
        f"LATERAL (VALUES (n.{column}), (o.{column})) AS x(id) WHERE x.id IS NOT NULL AND {_changed(columns)}"
    )


_CREDIT_OF_REVERSAL = (
    "SELECT array_agg(a.credit_id) FROM pay10_rows r JOIN payments_allocation a ON a.id = r.allocation_id "
    "WHERE a.credit_id IS NOT NULL"
)

# name: (table, event, transition, [(kind, SQL giving the noted ids), ...])
_ROW_NOTERS = {
    "pay10_balances_payment_insert": (
        "payments_payment", "INSERT", "NEW", [("p", f"SELECT array_agg(p.id) FROM pay10_rows p WHERE ({rules.PENDING_VERIFICATION})")]
    ),
    "pay10_balances_payment_delete": (
        "payments_payment", "DELETE", "OLD", [("p", f"SELECT array_agg(p.id) FROM pay10_rows p WHERE ({rules.PENDING_VERIFICATION})")]
    ),
    "pay10_balances_credit_insert": ("payments_credit", "INSERT", "NEW", [("c", "SELECT array_agg(id) FROM pay10_rows")]),
    "pay10_balances_credit_delete": ("payments_credit", "DELETE", "OLD", [("c", "SELECT array_agg(id) FROM pay10_rows")]),
    "pay10_balances_allocation_insert": (
        "payments_allocation", "INSERT", "NEW",
        [("c", "SELECT array_agg(credit_id) FROM pay10_rows WHERE credit_id IS NOT NULL")],
    ),
    "pay10_balances_allocation_delete": (
        "payments_allocation", "DELETE", "OLD",
        [("c", "SELECT array_agg(credit_id) FROM pay10_rows WHERE credit_id IS NOT NULL")],
    ),
    "pay10_balances_reversal_insert": ("payments_allocationreversal", "INSERT", "NEW", [("c", _CREDIT_OF_REVERSAL)]),
    "pay10_balances_reversal_delete": ("payments_allocationreversal", "DELETE", "OLD", [("c", _CREDIT_OF_REVERSAL)]),
    "pay10_balances_refund_insert": (
        "payments_refund", "INSERT", "NEW", [("c", "SELECT array_agg(credit_id) FROM pay10_rows WHERE credit_id IS NOT NULL")]
    ),
    "pay10_balances_refund_delete": (
        "payments_refund", "DELETE", "OLD", [("c", "SELECT array_agg(credit_id) FROM pay10_rows WHERE credit_id IS NOT NULL")]
    ),
}

_REJECTED_FLIPPED = (
    "(n.verification_status IS DISTINCT FROM 'REJECTED') <> (o.verification_status IS DISTINCT FROM 'REJECTED')"
)
_UPDATE_NOTERS = {
    "pay10_balances_payment_update": (
        "payments_payment",
        [
            ("p", f"SELECT array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id "
                  f"WHERE ({_PENDING_NEW} OR {_PENDING_OLD}) AND {_changed(_PAYMENT_COLUMNS)}"),
            ("s", f"SELECT array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id WHERE {_REJECTED_FLIPPED}"),
        ],
    ),
    "pay10_balances_credit_update": (
        "payments_credit", [("c", f"SELECT array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id WHERE {_changed(_CREDIT_COLUMNS)}")],
    ),
    "pay10_balances_allocation_update": ("payments_allocation", [("c", _both_sides("credit_id", _USE_COLUMNS))]),
    "pay10_balances_refund_update": ("payments_refund", [("c", _both_sides("credit_id", _USE_COLUMNS))]),
}


def _function(name: str, notes: list[tuple[str, str]]) -> str:
    body = "".join(f"    PERFORM pay10_balances_note('{kind}', ({sql}));\n" for kind, sql in notes)
    return f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{body}    RETURN NULL;\nEND;\n$$;"


def _statements() -> list[tuple[str, str, str, str]]:
    """(trigger name, table, function SQL, trigger SQL) for every noting trigger."""
    made = []
    for name, (table, event, transition, notes) in _ROW_NOTERS.items():
        trigger = (
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} TABLE AS pay10_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
        made.append((name, table, _function(name, notes), trigger))
    for name, (table, notes) in _UPDATE_NOTERS.items():
        trigger = (
            f"CREATE TRIGGER {name} AFTER UPDATE ON {table} REFERENCING OLD TABLE AS pay10_old NEW TABLE AS pay10_new "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
        made.append((name, table, _function(name, notes), trigger))
    return made


FLUSH_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER pay10_balances_flush AFTER INSERT ON pay10_balances_pending "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pay10_balances_flush()"
)


def _code() -> DatabaseCode:
    statements = _statements()
    return DatabaseCode(
        name="balances v1",
        setup=(PENDING_TABLE, REFRESH, NOTE, *(function for _name, _table, function, _trigger in statements)),
        triggers={
            **{name: (table, trigger) for name, table, _function, trigger in statements},
            "pay10_balances_flush": ("pay10_balances_pending", FLUSH_TRIGGER),
        },
        functions=(
            *(f"{name}()" for name, _table, _function, _trigger in statements),
            "pay10_balances_flush()", 'pay10_balances_note("char", bigint[])',
            "pay10_balances_refresh(bigint[], bigint[])",
        ),
        tables=("pay10_balances_pending",),
    )


CODE = _code()
