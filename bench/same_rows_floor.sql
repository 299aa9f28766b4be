-- The same-rows floor (issue 14): every row `pay10_backfill` writes on a legacy database, written by
-- hand-written set-based SQL in ONE transaction (bench/backfill.py runs this file as one), one
-- statement per table, on a copy of the same legacy data (at `0002_pay10_schema`):
--   the mapping (channel, verification_status) of every legacy payment; the synthetic LEGACY payment
--   of every shortfall; the allocations (oldest received_at first, then id, up to the legacy paid
--   figure); the credits (every unallocated cent of a succeeded payment, with its case's reason);
--   the new status of every invoice whose status the engine changes; a marker per invoice
--   (payments_invoicemigration) and per payment (payments_paymentmigration); an audit row per
--   invoice and per payment with the same JSON documents as the backfill's; the deviation rows.
-- Foreign keys stay on (they are system triggers, untouched) and every index is the real table's.
-- The guard triggers (the pay10_*_touch triggers that feed the commit-time invariant guard, the
-- append-only and keep-history triggers) do NOT fire: bench/backfill.py disables them on this copy
-- only, before the timed transaction, with `ALTER TABLE ... DISABLE TRIGGER USER` (user triggers
-- only; `session_replication_role = replica` would also switch the foreign keys off).
-- Its working tables are temporary, analyzed as they are made (autovacuum never sees them).
-- What it omits on purpose: the run record and per-batch cursor (`run_id` is NULL), the locks, the
-- batches and their commits, resumability, the guards: this is the least any implementation could
-- do to write these rows. The rules are SPEC's "Backfill rules" as payments/domain/backfill.py
-- decides them, restated in SQL; bench/backfill.py compares its row counts with the backfill's.

-- Every legacy invoice, its legacy paid figure and the status engine's verdict on it.
CREATE TEMP TABLE sr_invoice ON COMMIT DROP AS
SELECT i.id, i.tenant_id, i.number, i.currency, i.status, i.amount_cents, i.amount_paid_cents, i.due_date,
       i.updated_at, COALESCE(i.paid_at, i.issued_at, i.created_at) AS synthetic_received_at, f.paid,
       CASE WHEN i.status IN ('DRAFT', 'VOID') THEN i.status
            WHEN f.paid >= i.amount_cents THEN 'PAID'
            WHEN i.due_date IS NOT NULL AND i.due_date < current_date THEN 'OVERDUE'
            WHEN f.paid > 0 THEN 'PARTIALLY_PAID'
            ELSE 'ISSUED' END AS new_status,
       NULLIF(concat_ws('; ',
           CASE WHEN i.amount_paid_cents > i.amount_cents
                THEN format('amount_paid_cents %s exceeds amount_cents %s', i.amount_paid_cents, i.amount_cents) END,
           CASE WHEN i.status = 'PAID' AND i.amount_paid_cents <> i.amount_cents
                THEN format('PAID with amount_paid_cents %s of %s', i.amount_paid_cents, i.amount_cents)
                WHEN i.status = 'PARTIALLY_PAID' AND NOT (0 < i.amount_paid_cents AND i.amount_paid_cents < i.amount_cents)
                THEN format('PARTIALLY_PAID with amount_paid_cents %s of %s', i.amount_paid_cents, i.amount_cents)
                WHEN i.status = 'ISSUED' AND i.amount_paid_cents > 0
                THEN format('ISSUED with amount_paid_cents %s', i.amount_paid_cents)
                WHEN i.status IN ('DRAFT', 'VOID') AND i.amount_paid_cents > 0
                THEN format('%s with amount_paid_cents %s (counted as 0)', i.status, i.amount_paid_cents) END
       ), '') AS problems
FROM billing_invoice i
CROSS JOIN LATERAL (SELECT CASE WHEN i.status = 'PAID' THEN i.amount_cents
                                WHEN i.status IN ('ISSUED', 'PARTIALLY_PAID', 'OVERDUE')
                                    THEN LEAST(GREATEST(i.amount_paid_cents, 0), i.amount_cents)
                                ELSE 0 END AS paid) f
WHERE NOT EXISTS (SELECT 1 FROM payments_invoicemigration m WHERE m.invoice_id = i.id);

ANALYZE sr_invoice;

-- Every legacy (unmapped) payment: its mapping, whether its invoice's backfill takes it (`in_plan`:
-- linked to an invoice of its own tenant), and the money it is allocated (oldest first, then id).
CREATE TEMP TABLE sr_payment ON COMMIT DROP AS
WITH legacy AS (
    SELECT p.id, p.tenant_id, p.invoice_id, p.amount_cents, p.currency, p.method, p.status, p.received_at,
           t.currency AS tenant_currency, i.tenant_id AS invoice_tenant_id, COALESCE(i.number, '') AS invoice_number,
           si.status AS invoice_status, si.paid AS invoice_paid,
           (si.id IS NOT NULL AND i.tenant_id = p.tenant_id) AS in_plan,
           CASE btrim(regexp_replace(lower(btrim(p.method)), '[-_\s]+', '_', 'g'), '_')
                WHEN 'card' THEN 'CARD' WHEN 'bank' THEN 'BANK_TRANSFER' WHEN 'bank_transfer' THEN 'BANK_TRANSFER'
                WHEN 'transfer' THEN 'BANK_TRANSFER' WHEN 'wire' THEN 'BANK_TRANSFER' WHEN 'cash' THEN 'CASH'
                WHEN 'mpesa' THEN 'MOBILE_MONEY' WHEN 'mobile' THEN 'MOBILE_MONEY' WHEN 'mobile_money' THEN 'MOBILE_MONEY'
                WHEN 'cheque' THEN 'CHEQUE' WHEN 'check' THEN 'CHEQUE' ELSE 'OTHER' END AS channel,
           CASE p.status WHEN 'SUCCEEDED' THEN 'VERIFIED' WHEN 'PENDING' THEN 'PENDING' ELSE 'REJECTED' END
               AS verification_status,
           (p.currency <> t.currency OR (i.tenant_id = p.tenant_id AND i.currency <> p.currency)) AS mismatch
    FROM payments_payment p
    JOIN billing_tenant t ON t.id = p.tenant_id
    LEFT JOIN billing_invoice i ON i.id = p.invoice_id
    LEFT JOIN sr_invoice si ON si.id = p.invoice_id
    WHERE p.verification_status IS NULL
      AND NOT EXISTS (SELECT 1 FROM payments_paymentmigration m WHERE m.payment_id = p.id)
)
SELECT l.*,
       (l.in_plan AND NOT l.mismatch AND l.status = 'SUCCEEDED') AS eligible,
       CASE WHEN l.in_plan AND NOT l.mismatch AND l.status = 'SUCCEEDED'
            THEN LEAST(l.amount_cents, GREATEST(l.invoice_paid - COALESCE(SUM(l.amount_cents) FILTER (
                     WHERE l.in_plan AND NOT l.mismatch AND l.status = 'SUCCEEDED') OVER (
                     PARTITION BY l.invoice_id ORDER BY l.received_at, l.id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0))
            ELSE 0 END AS applied,
       (l.invoice_id IS NOT NULL AND l.invoice_tenant_id <> l.tenant_id) AS cross_tenant
FROM legacy l;

ANALYZE sr_payment;

-- Per payment: its credit (amount, reason, deviation kind) and the kinds of its deviations, in the
-- planner's order.
CREATE TEMP TABLE sr_plan ON COMMIT DROP AS
SELECT p.*, c.credit_cents, c.reason, c.credit_kind,
       CASE WHEN p.in_plan THEN
                CASE WHEN p.mismatch THEN ARRAY['CURRENCY_MISMATCH'] WHEN c.credit_kind IS NOT NULL THEN ARRAY[c.credit_kind]
                     ELSE ARRAY[]::text[] END
            ELSE array_remove(ARRAY[CASE WHEN p.cross_tenant THEN 'CROSS_TENANT_LINK' END,
                                    CASE WHEN p.currency <> p.tenant_currency THEN 'CURRENCY_MISMATCH' END,
                                    c.credit_kind], NULL) END AS deviation_kinds,
       CASE WHEN c.credit_cents IS NULL THEN NULL
            ELSE nextval(pg_get_serial_sequence('payments_credit', 'id')) END AS credit_id
FROM sr_payment p
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.eligible AND p.amount_cents > p.applied THEN p.amount_cents - p.applied
                WHEN NOT p.in_plan AND p.status = 'SUCCEEDED' AND p.currency = p.tenant_currency
                     AND (p.cross_tenant OR p.invoice_id IS NULL) THEN p.amount_cents END AS credit_cents,
           CASE WHEN p.in_plan THEN
                    CASE WHEN p.invoice_status = 'DRAFT' THEN format('PAY-10 backfill: payment on DRAFT invoice %s', p.invoice_number)
                         WHEN p.invoice_status = 'VOID' THEN format('PAY-10 backfill: payment on VOID invoice %s', p.invoice_number)
                         WHEN p.invoice_paid = 0 AND p.invoice_status <> 'PAID'
                              THEN format('PAY-10 backfill: payment on unpaid invoice %s', p.invoice_number)
                         ELSE format('PAY-10 backfill: overpayment of invoice %s', p.invoice_number) END
                WHEN p.cross_tenant THEN format('PAY-10 backfill: cross-tenant link to invoice %s of tenant %s',
                                                p.invoice_id, p.invoice_tenant_id)
                ELSE 'PAY-10 backfill: unlinked payment' END AS reason,
           CASE WHEN p.eligible AND p.amount_cents > p.applied THEN
                    CASE WHEN p.invoice_status IN ('DRAFT', 'VOID') OR (p.invoice_paid = 0 AND p.invoice_status <> 'PAID')
                         THEN 'UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT' ELSE 'OVERPAYMENT_TO_CREDIT' END
                WHEN NOT p.in_plan AND NOT p.cross_tenant AND p.invoice_id IS NULL AND p.status = 'SUCCEEDED'
                     AND p.currency = p.tenant_currency THEN 'UNLINKED_PAYMENT_TO_CREDIT' END AS credit_kind
) c;

ANALYZE sr_plan;

-- Per invoice: what its payments cover, its shortfall (the synthetic payment's id drawn now) and
-- the kinds of its deviations, in the planner's order.
CREATE TEMP TABLE sr_figure ON COMMIT DROP AS
SELECT i.*, COALESCE(a.applied, 0) AS applied, COALESCE(a.succeeded, 0) AS succeeded,
       i.paid - COALESCE(a.applied, 0) AS shortfall,
       CASE WHEN i.paid > COALESCE(a.applied, 0) THEN nextval(pg_get_serial_sequence('payments_payment', 'id')) END
           AS synthetic_id,
       array_remove(ARRAY[CASE WHEN i.paid > COALESCE(a.applied, 0) THEN 'SHORTFALL_COVERED' END,
                          CASE WHEN i.problems IS NOT NULL THEN 'INCONSISTENT_LEGACY_FIGURES' END,
                          CASE WHEN i.new_status <> i.status THEN 'STATUS_CHANGED' END], NULL) AS deviation_kinds
FROM sr_invoice i
LEFT JOIN (SELECT invoice_id, SUM(applied) AS applied, SUM(amount_cents) AS succeeded
           FROM sr_payment WHERE eligible GROUP BY invoice_id) a ON a.invoice_id = i.id
ORDER BY i.id;

ANALYZE sr_figure;

-- Every allocation, its id drawn in the planner's order (per invoice: payments oldest first, then
-- the synthetic payment).
CREATE TEMP TABLE sr_allocation ON COMMIT DROP AS
SELECT nextval(pg_get_serial_sequence('payments_allocation', 'id')) AS id, s.*
FROM (
    SELECT p.invoice_id, p.tenant_id, p.id AS payment_id, p.applied AS amount_cents, 0 AS source, p.received_at
    FROM sr_payment p WHERE p.eligible AND p.applied > 0
    UNION ALL
    SELECT f.id, f.tenant_id, f.synthetic_id, f.shortfall, 1, NULL FROM sr_figure f WHERE f.synthetic_id IS NOT NULL
    ORDER BY 1, 5, 6, 3
) s;

ANALYZE sr_allocation;

-- The writes: one statement per table.
INSERT INTO payments_payment (id, tenant_id, invoice_id, amount_cents, currency, method, reference, status, received_at,
                              created_at, channel, verification_status, idempotency_key)
SELECT synthetic_id, tenant_id, id, shortfall, currency, 'legacy', 'pay10-backfill:' || id, 'SUCCEEDED',
       synthetic_received_at, now(), 'LEGACY', 'VERIFIED', 'pay10-backfill:' || id
FROM sr_figure WHERE synthetic_id IS NOT NULL;

UPDATE payments_payment p SET channel = s.channel, verification_status = s.verification_status
FROM sr_payment s WHERE p.id = s.id;

INSERT INTO payments_allocation (id, tenant_id, invoice_id, payment_id, amount_cents, backfilled, created_at)
SELECT id, tenant_id, invoice_id, payment_id, amount_cents, true, now() FROM sr_allocation;

INSERT INTO payments_credit (id, tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, created_at)
SELECT credit_id, tenant_id, currency, credit_cents, id, reason, true, now() FROM sr_plan WHERE credit_id IS NOT NULL;

INSERT INTO payments_invoicemigration (invoice_id, run_id, legacy_status, legacy_amount_paid_cents, legacy_paid_cents,
                                       legacy_updated_at, migrated_at)
SELECT id, NULL, status, amount_paid_cents, paid, updated_at, now() FROM sr_invoice;

INSERT INTO payments_paymentmigration (payment_id, run_id, migrated_at)
SELECT id, NULL, now() FROM sr_payment;

UPDATE billing_invoice i SET status = f.new_status, updated_at = now()
FROM sr_invoice f WHERE f.id = i.id AND f.new_status <> i.status;

INSERT INTO payments_backfilldeviation (run_id, kind, tenant_id, invoice_id, invoice_number, payment_id, legacy, new,
                                        detail, created_at)
SELECT NULL, d.kind, d.tenant_id, d.invoice_id, d.invoice_number, d.payment_id, d.legacy, d.new, left(d.detail, 255), now()
FROM (
    -- a payment in a currency other than its tenant's (or its invoice's)
    SELECT 'CURRENCY_MISMATCH' AS kind, p.tenant_id, p.invoice_id, p.invoice_number, p.id AS payment_id,
           jsonb_build_object('paymentCurrency', p.currency, 'amountCents', p.amount_cents, 'status', p.status) AS legacy,
           jsonb_build_object('tenantCurrency', p.tenant_currency, 'allocatedCents', 0, 'creditCents', 0) AS new,
           format('payment in %s for a %s tenant: left unallocated for a person to resolve', p.currency, p.tenant_currency)
               AS detail
    FROM sr_plan p WHERE 'CURRENCY_MISMATCH' = ANY(p.deviation_kinds)
    UNION ALL
    -- money credited by an invoice's backfill or as an unlinked payment
    SELECT p.credit_kind, p.tenant_id, p.invoice_id, p.invoice_number, p.id,
           jsonb_build_object('paymentCents', p.amount_cents, 'invoiceStatus', CASE WHEN p.in_plan THEN p.invoice_status END),
           jsonb_build_object('allocatedCents', p.applied, 'creditCents', p.credit_cents), p.reason
    FROM sr_plan p WHERE p.credit_kind IS NOT NULL
    UNION ALL
    SELECT 'CROSS_TENANT_LINK', p.tenant_id, p.invoice_id, p.invoice_number, p.id,
           jsonb_build_object('invoiceId', p.invoice_id, 'invoiceTenant', p.invoice_tenant_id, 'paymentTenant', p.tenant_id,
                              'status', p.status),
           jsonb_build_object('allocatedCents', 0, 'creditCents', COALESCE(p.credit_cents, 0)),
           'payment linked to another tenant''s invoice: never allocated across tenants'
    FROM sr_plan p WHERE p.cross_tenant
    UNION ALL
    SELECT 'SHORTFALL_COVERED', f.tenant_id, f.id, f.number, f.synthetic_id,
           jsonb_build_object('paidCents', f.paid, 'succeededPaymentsCents', f.succeeded),
           jsonb_build_object('syntheticPaymentCents', f.shortfall),
           format('legacy paid figure %s exceeds the linked succeeded payments'' allocation', f.paid)
    FROM sr_figure f WHERE f.synthetic_id IS NOT NULL
    UNION ALL
    SELECT 'INCONSISTENT_LEGACY_FIGURES', f.tenant_id, f.id, f.number, NULL,
           jsonb_build_object('status', f.status, 'amountCents', f.amount_cents, 'amountPaidCents', f.amount_paid_cents),
           jsonb_build_object('paidCents', f.paid), f.problems
    FROM sr_figure f WHERE f.problems IS NOT NULL
    UNION ALL
    SELECT 'STATUS_CHANGED', f.tenant_id, f.id, f.number, NULL,
           jsonb_build_object('status', f.status), jsonb_build_object('status', f.new_status, 'paidCents', f.paid),
           format('%s -> %s by the status engine', f.status, f.new_status)
    FROM sr_figure f WHERE f.new_status <> f.status
) d;

-- An audit row per invoice and per payment, the same documents as the backfill's
-- (payments/services/backfill/audit_payload.py), built by the database.
INSERT INTO payments_paymentauditlog (tenant_id, actor_label, event_type, event_time, invoice_id, payment_id, credit_id,
                                      amount_cents, before, after, extra, backfilled)
SELECT f.tenant_id, 'pay10-backfill', 'INVOICE_BACKFILLED', now(), f.id, f.synthetic_id, NULL, f.paid,
       jsonb_build_object('status', f.status, 'amountPaidCents', f.amount_paid_cents),
       jsonb_build_object('status', f.new_status, 'paidCents', f.paid,
                          'allocations', COALESCE(a.listed, '[]'::jsonb),
                          'syntheticPaymentId', f.synthetic_id,
                          'syntheticPaymentCents', CASE WHEN f.synthetic_id IS NULL THEN 0 ELSE f.shortfall END),
       jsonb_build_object('runId', NULL, 'deviations', to_jsonb(f.deviation_kinds),
                          'origin', jsonb_build_object('osUser', current_user)),
       true
FROM sr_figure f
LEFT JOIN (SELECT invoice_id, jsonb_agg(jsonb_build_object('allocationId', id, 'invoiceId', invoice_id,
                                                           'paymentId', payment_id, 'amountCents', amount_cents)
                                        ORDER BY id) AS listed
           FROM sr_allocation GROUP BY invoice_id) a ON a.invoice_id = f.id
UNION ALL
SELECT p.tenant_id, 'pay10-backfill', 'PAYMENT_BACKFILLED', now(), p.invoice_id, p.id, p.credit_id, p.amount_cents,
       jsonb_build_object('status', p.status, 'method', p.method),
       jsonb_build_object('channel', p.channel, 'verificationStatus', p.verification_status,
                          'allocations', CASE WHEN a.id IS NULL THEN '[]'::jsonb
                                              ELSE jsonb_build_array(jsonb_build_object(
                                                  'allocationId', a.id, 'invoiceId', a.invoice_id,
                                                  'paymentId', a.payment_id, 'amountCents', a.amount_cents)) END,
                          'credit', CASE WHEN p.credit_id IS NULL THEN NULL
                                         ELSE jsonb_build_object('creditId', p.credit_id, 'amountCents', p.credit_cents,
                                                                 'reason', p.reason) END),
       jsonb_build_object('runId', NULL, 'deviations', to_jsonb(p.deviation_kinds),
                          'origin', jsonb_build_object('osUser', current_user)),
       true
FROM sr_plan p
LEFT JOIN sr_allocation a ON a.payment_id = p.id AND a.source = 0;
