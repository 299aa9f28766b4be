"""Guards v3: guards v2 (`guards_v2.py`, read its docstring for what they guard and how) composed
from the money rules' SQL fragments (`payments/database/rules.py`) instead of spelling them out:
what counts against an invoice (`COUNTED_AGAINST_INVOICE`: every active allocation but a REJECTED
payment's, legacy rows with no verification status included), an allocation crossing tenants or
currencies (`ALLOCATION_CROSSES`), an active allocation (`NOT_REVERSED` over `REVERSAL_JOIN`), a refund
of unallocated money (`REFUND_OF_UNALLOCATED`), and an allocation whose invoice, payment or credit is
gone (`ALLOCATION_PARENT_MISSING`, the part of the orphan rule that lets one be deleted). Same
behaviour as v2, installed by `0010_pay10_database_code_v3`.

A landed version: `tests/payments/database/test_landed_versions.py` pins its rendered SQL, so a
fragment edit that would change it fails there; the change belongs in `guards_v4`.
"""
from payments.database import DatabaseCode, rules
from payments.database.guards_v2 import (
    FUNCTION_NAMES,
    GUARD_TABLE,
    PURGE_ALLOWED,
    REPLACED_FUNCTION_NAMES,
    REPLACED_TRIGGERS,
    TRIGGERS,
)

TOUCHED = "pg_temp.pay10_guard_touched"
TRUNCATE_FROM = 5000
CHECK_WORK_MEM = "64MB"

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION pay10_guard_prepare() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('{TOUCHED}') IS NULL THEN
        CREATE TEMPORARY TABLE pay10_guard_touched (kind "char" NOT NULL, ids bigint[] NOT NULL);
    END IF;
END;
$$;

-- Called after a statement noted ids: makes sure the commit-time check of this transaction is queued.
CREATE OR REPLACE FUNCTION pay10_guard_arm() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pay10_guard_pending (xact) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_guard_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_noted bigint;
    v_invoices bigint[];
    v_payments bigint[];
    v_credits bigint[];
    v_id bigint;
    v_used bigint;
    v_amount bigint;
    v_crosses boolean;
    v_work_mem text;
    v_hashjoin text;
    v_mergejoin text;
    v_seqscan text;
BEGIN
    IF to_regclass('{TOUCHED}') IS NOT NULL THEN
        SELECT coalesce(sum(cardinality(ids)), 0) INTO v_noted FROM {TOUCHED};
        SELECT coalesce(array_agg(x.id), '{{}}') INTO v_payments
        FROM {TOUCHED} t, unnest(t.ids) AS x(id) WHERE t.kind IN ('p', 'P');
        SELECT coalesce(array_agg(x.id), '{{}}') INTO v_credits
        FROM {TOUCHED} t, unnest(t.ids) AS x(id) WHERE t.kind = 'c';
        -- A payment whose amount, status, tenant or currency changed: every invoice it is allocated to.
        SELECT coalesce(array_agg(x.id), '{{}}') INTO v_invoices
        FROM (
            SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'i'
            UNION ALL
            SELECT a.invoice_id FROM payments_allocation a
            WHERE a.payment_id = ANY (ARRAY(SELECT u.id FROM {TOUCHED} t, unnest(t.ids) AS u(id) WHERE t.kind = 'P'))
        ) x;
        -- Aggregates over a bulk write's ids fit in memory, and every row is reached by index
        -- probes from the noted ids, never by scanning a whole table: a hash join would read all of
        -- payments and invoices at every commit, a cost that grows with the tables (the backfill
        -- commits a batch at a time, so it grew with their square). Reset below.
        v_work_mem := current_setting('work_mem');
        v_hashjoin := current_setting('enable_hashjoin');
        v_mergejoin := current_setting('enable_mergejoin');
        v_seqscan := current_setting('enable_seqscan');
        PERFORM set_config('work_mem', '{CHECK_WORK_MEM}', true);
        PERFORM set_config('enable_hashjoin', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
        PERFORM set_config('enable_seqscan', 'off', true);
        -- EXECUTE plans each check for this transaction's ids (a hashed `= ANY` for a bulk write),
        -- where a cached plan would keep the first.
        -- One grouped pass per kind checks both the amount bound and invariant 4.
        EXECUTE $q$
            -- MATERIALIZED: planned for all rows, not for a fast first row.
            WITH violations AS MATERIALIZED (
                SELECT i.id,
                       coalesce(sum(a.amount_cents) FILTER (WHERE {rules.NOT_REVERSED} AND ({rules.COUNTED_AGAINST_INVOICE})), 0),
                       i.amount_cents,
                       -- a reversed allocation is history: one that crossed (neutralised by
                       -- pay10_cleanup_orphans) must not block the invoice's later allocations
                       coalesce(bool_or({rules.NOT_REVERSED} AND ({rules.ALLOCATION_CROSSES})), false)
                FROM payments_allocation a
                JOIN billing_invoice i ON i.id = a.invoice_id
                LEFT JOIN payments_payment p ON p.id = a.payment_id
                LEFT JOIN payments_credit c ON c.id = a.credit_id
                {rules.REVERSAL_JOIN}
                WHERE a.invoice_id = ANY ($1)
                GROUP BY i.id
                HAVING coalesce(sum(a.amount_cents) FILTER (WHERE {rules.NOT_REVERSED} AND ({rules.COUNTED_AGAINST_INVOICE})), 0)
                       > i.amount_cents
                    OR bool_or({rules.NOT_REVERSED} AND ({rules.ALLOCATION_CROSSES}))
            )
            SELECT * FROM violations ORDER BY 1 LIMIT 1
        $q$ INTO v_id, v_used, v_amount, v_crosses USING v_invoices;
        IF v_id IS NOT NULL AND v_used > v_amount THEN
            RAISE EXCEPTION 'PAY-10 invariant 3: invoice % over-applied (% cents applied, amount %)',
                v_id, v_used, v_amount USING ERRCODE = 'check_violation';
        ELSIF v_id IS NOT NULL THEN
            RAISE EXCEPTION 'PAY-10 invariant 4: an allocation of invoice % crosses tenants or currencies',
                v_id USING ERRCODE = 'check_violation';
        END IF;

        -- A payment's usage: active allocations, credits issued from it, refunds of its unallocated money.
        EXECUTE $q$
            -- MATERIALIZED: planned for all rows, not for a fast first row.
            WITH violations AS MATERIALIZED (
                SELECT p.id, sum(u.cents), p.amount_cents,
                       coalesce(bool_or(u.tenant_id <> p.tenant_id OR u.currency <> p.currency), false)
                FROM (
                    -- An allocation's tenants and currency are checked with its invoice, above: every
                    -- payment noted here has its allocations' invoices noted too.
                    SELECT a.payment_id, CASE WHEN {rules.NOT_REVERSED} THEN a.amount_cents ELSE 0 END AS cents,
                           NULL AS tenant_id, NULL AS currency
                    FROM payments_allocation a
                    {rules.REVERSAL_JOIN}
                    WHERE a.payment_id = ANY ($1)
                    UNION ALL
                    SELECT c.source_payment_id, c.amount_cents, c.tenant_id, c.currency
                    FROM payments_credit c
                    WHERE c.source_payment_id = ANY ($1)
                    UNION ALL
                    SELECT f.payment_id, f.amount_cents, NULL, NULL
                    FROM payments_refund f
                    WHERE {rules.REFUND_OF_UNALLOCATED} AND f.payment_id = ANY ($1)
                ) u
                JOIN payments_payment p ON p.id = u.payment_id
                GROUP BY p.id
                HAVING sum(u.cents) > p.amount_cents
                    OR bool_or(u.tenant_id <> p.tenant_id OR u.currency <> p.currency)
            )
            SELECT * FROM violations ORDER BY 1 LIMIT 1
        $q$ INTO v_id, v_used, v_amount, v_crosses USING v_payments;
        IF v_id IS NOT NULL AND v_used > v_amount THEN
            RAISE EXCEPTION 'PAY-10 invariant 1: payment % over-spent (% cents allocated, credited or refunded, amount %)',
                v_id, v_used, v_amount USING ERRCODE = 'check_violation';
        ELSIF v_id IS NOT NULL THEN
            RAISE EXCEPTION 'PAY-10 invariant 4: money of payment % crosses tenants or currencies',
                v_id USING ERRCODE = 'check_violation';
        END IF;

        -- A credit's usage: active applications and refunds of it.
        EXECUTE $q$
            -- MATERIALIZED: planned for all rows, not for a fast first row.
            WITH violations AS MATERIALIZED (
                SELECT c.id, sum(u.cents), c.amount_cents
                FROM (
                    SELECT a.credit_id, CASE WHEN {rules.NOT_REVERSED} THEN a.amount_cents ELSE 0 END AS cents
                    FROM payments_allocation a
                    {rules.REVERSAL_JOIN}
                    WHERE a.credit_id = ANY ($1)
                    UNION ALL
                    SELECT f.credit_id, f.amount_cents
                    FROM payments_refund f
                    WHERE f.credit_id = ANY ($1)
                ) u
                JOIN payments_credit c ON c.id = u.credit_id
                GROUP BY c.id
                HAVING sum(u.cents) > c.amount_cents
            )
            SELECT * FROM violations ORDER BY 1 LIMIT 1
        $q$ INTO v_id, v_used, v_amount USING v_credits;
        IF v_id IS NOT NULL THEN
            RAISE EXCEPTION 'PAY-10 invariant 2: credit % over-spent (% cents applied or refunded, amount %)',
                v_id, v_used, v_amount USING ERRCODE = 'check_violation';
        END IF;
        PERFORM set_config('work_mem', v_work_mem, true);
        PERFORM set_config('enable_hashjoin', v_hashjoin, true);
        PERFORM set_config('enable_mergejoin', v_mergejoin, true);
        PERFORM set_config('enable_seqscan', v_seqscan, true);

        IF v_noted > {TRUNCATE_FROM} THEN
            TRUNCATE {TOUCHED};  -- later plans see an empty table, not a bulk write's dead pages
        ELSE
            DELETE FROM {TOUCHED};  -- a handful: cheaper than a new relfilenode per transaction
        END IF;
    END IF;
    DELETE FROM pay10_guard_pending WHERE xact = NEW.xact;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_allocation_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pay10_guard_prepare();
    INSERT INTO {TOUCHED} (kind, ids)
        SELECT kind, ids FROM (
            SELECT 'i'::"char", array_agg(invoice_id) FROM pay10_new
            UNION ALL SELECT 'p', array_agg(payment_id) FROM pay10_new WHERE payment_id IS NOT NULL
            UNION ALL SELECT 'c', array_agg(credit_id) FROM pay10_new WHERE credit_id IS NOT NULL
        ) noted (kind, ids) WHERE ids IS NOT NULL;
    IF FOUND THEN
        PERFORM pay10_guard_arm();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_credit_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pay10_guard_prepare();
    INSERT INTO {TOUCHED} (kind, ids)
        SELECT kind, ids FROM (
            SELECT 'c'::"char", array_agg(id) FROM pay10_new
            UNION ALL SELECT 'p', array_agg(source_payment_id) FROM pay10_new WHERE source_payment_id IS NOT NULL
        ) noted (kind, ids) WHERE ids IS NOT NULL;
    IF FOUND THEN
        PERFORM pay10_guard_arm();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_refund_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pay10_guard_prepare();
    INSERT INTO {TOUCHED} (kind, ids)
        SELECT kind, ids FROM (
            SELECT 'c'::"char", array_agg(credit_id) FROM pay10_new WHERE credit_id IS NOT NULL
            UNION ALL SELECT 'p', array_agg(payment_id) FROM pay10_new WHERE credit_id IS NULL
        ) noted (kind, ids) WHERE ids IS NOT NULL;
    IF FOUND THEN
        PERFORM pay10_guard_arm();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_payment_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Most payment UPDATEs (status mirror, channel) change no money column: note nothing for them.
    IF EXISTS (
        SELECT 1 FROM pay10_new n JOIN pay10_old o ON o.id = n.id
        WHERE (n.amount_cents, n.verification_status, n.tenant_id, n.currency)
              IS DISTINCT FROM (o.amount_cents, o.verification_status, o.tenant_id, o.currency)
    ) THEN
        PERFORM pay10_guard_prepare();
        INSERT INTO {TOUCHED} (kind, ids)
            SELECT 'P', array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id
            WHERE (n.amount_cents, n.verification_status, n.tenant_id, n.currency)
                  IS DISTINCT FROM (o.amount_cents, o.verification_status, o.tenant_id, o.currency);
        PERFORM pay10_guard_arm();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_invoice_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Most invoice UPDATEs (status, updated_at) change no money column: note nothing for them.
    IF EXISTS (
        SELECT 1 FROM pay10_new n JOIN pay10_old o ON o.id = n.id
        WHERE (n.amount_cents, n.tenant_id, n.currency) IS DISTINCT FROM (o.amount_cents, o.tenant_id, o.currency)
    ) THEN
        PERFORM pay10_guard_prepare();
        INSERT INTO {TOUCHED} (kind, ids)
            SELECT 'i', array_agg(n.id) FROM pay10_new n JOIN pay10_old o ON o.id = n.id
            WHERE (n.amount_cents, n.tenant_id, n.currency) IS DISTINCT FROM (o.amount_cents, o.tenant_id, o.currency);
        PERFORM pay10_guard_arm();
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_allocation_is_orphan(p_allocation_id bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (
        SELECT 1 FROM payments_allocation a
        LEFT JOIN billing_invoice i ON i.id = a.invoice_id
        LEFT JOIN payments_payment p ON p.id = a.payment_id
        LEFT JOIN payments_credit c ON c.id = a.credit_id
        WHERE a.id = p_allocation_id AND ({rules.ALLOCATION_PARENT_MISSING})
    );
$$;

CREATE OR REPLACE FUNCTION pay10_allocation_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF {PURGE_ALLOWED} OR pay10_allocation_is_orphan(OLD.id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'PAY-10: allocations are history and are never deleted (record a reversal instead)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.amount_cents IS DISTINCT FROM OLD.amount_cents OR NEW.invoice_id IS DISTINCT FROM OLD.invoice_id
       OR NEW.payment_id IS DISTINCT FROM OLD.payment_id OR NEW.credit_id IS DISTINCT FROM OLD.credit_id
       OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION 'PAY-10: allocation % is history; its money columns are never updated', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_reversal_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF {PURGE_ALLOWED} OR pay10_allocation_is_orphan(OLD.allocation_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'PAY-10: allocation reversals are history and are never deleted'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.allocation_id IS DISTINCT FROM OLD.allocation_id THEN
        RAISE EXCEPTION 'PAY-10: the reversal of allocation % is history and never moves', OLD.allocation_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION pay10_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF {PURGE_ALLOWED} THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'PAY-10: the payment audit log is append-only (DELETE refused)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.actor_id IS NULL AND OLD.actor_id IS NOT NULL
       AND to_jsonb(NEW) - 'actor_id' = to_jsonb(OLD) - 'actor_id' THEN
        RETURN NEW;  -- the user was deleted (on_delete=SET_NULL); actor_label keeps who it was
    END IF;
    RAISE EXCEPTION 'PAY-10: the payment audit log is append-only (UPDATE refused)'
        USING ERRCODE = 'restrict_violation';
END;
$$;
"""


CODE = DatabaseCode(
    name="guards v3",
    setup=(GUARD_TABLE, FUNCTIONS),
    triggers=TRIGGERS,
    functions=FUNCTION_NAMES,
    tables=("pay10_guard_pending",),
    retired_triggers=REPLACED_TRIGGERS,
    retired_functions=REPLACED_FUNCTION_NAMES,
)
