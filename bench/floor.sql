-- The floor: the PAY-10 backfill's payments, allocations and credits written by hand-written,
-- set-based SQL in one statement each (PostgreSQL). No progress records, no audit rows, no
-- resumability: the fastest any implementation could hope for on this database.
CREATE TEMP TABLE floor_figure ON COMMIT DROP AS
SELECT i.id AS invoice_id, i.tenant_id, i.currency,
       CASE WHEN i.status = 'PAID' THEN i.amount_cents
            WHEN i.status IN ('ISSUED', 'PARTIALLY_PAID', 'OVERDUE')
                 THEN LEAST(GREATEST(i.amount_paid_cents, 0), i.amount_cents)
            ELSE 0 END AS paid_figure,
       COALESCE(i.paid_at, i.issued_at, i.created_at) AS synthetic_received_at
FROM billing_invoice i;

-- Succeeded payments linked to an invoice of their own tenant and currency, with the money of
-- the older ones before them (oldest received_at first, then id).
CREATE TEMP TABLE floor_linked ON COMMIT DROP AS
SELECT p.id AS payment_id, f.invoice_id, f.tenant_id, p.amount_cents,
       GREATEST(LEAST(p.amount_cents,
                      f.paid_figure - COALESCE(SUM(p.amount_cents) OVER (
                          PARTITION BY p.invoice_id ORDER BY p.received_at, p.id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)), 0) AS allocated
FROM payments_payment p
JOIN floor_figure f ON f.invoice_id = p.invoice_id AND f.tenant_id = p.tenant_id AND f.currency = p.currency
WHERE p.status = 'SUCCEEDED';

INSERT INTO payments_allocation (tenant_id, invoice_id, payment_id, amount_cents, backfilled, created_at)
SELECT tenant_id, invoice_id, payment_id, allocated, true, now() FROM floor_linked WHERE allocated > 0;

WITH shortfall AS (
    SELECT f.invoice_id, f.tenant_id, f.currency, f.synthetic_received_at,
           f.paid_figure - COALESCE(a.allocated, 0) AS gap
    FROM floor_figure f
    LEFT JOIN (SELECT invoice_id, SUM(allocated) AS allocated FROM floor_linked GROUP BY invoice_id) a
           ON a.invoice_id = f.invoice_id
    WHERE f.paid_figure > COALESCE(a.allocated, 0)
), synthetic AS (
    INSERT INTO payments_payment (tenant_id, invoice_id, amount_cents, currency, method, reference, status,
                                  received_at, created_at, channel, verification_status, idempotency_key)
    SELECT tenant_id, invoice_id, gap, currency, 'legacy', '', 'SUCCEEDED', synthetic_received_at, now(),
           'LEGACY', 'VERIFIED', 'pay10-backfill:' || invoice_id
    FROM shortfall
    RETURNING id, tenant_id, invoice_id, amount_cents
)
INSERT INTO payments_allocation (tenant_id, invoice_id, payment_id, amount_cents, backfilled, created_at)
SELECT tenant_id, invoice_id, id, amount_cents, true, now() FROM synthetic;

-- Every unallocated cent of a succeeded payment in its tenant's currency becomes credit.
INSERT INTO payments_credit (tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, created_at)
SELECT p.tenant_id, p.currency, p.amount_cents - COALESCE(l.allocated, 0), p.id, 'PAY-10 backfill (floor)', true, now()
FROM payments_payment p
JOIN billing_tenant t ON t.id = p.tenant_id AND t.currency = p.currency
LEFT JOIN floor_linked l ON l.payment_id = p.id
WHERE p.status = 'SUCCEEDED' AND p.channel IS NULL AND p.amount_cents > COALESCE(l.allocated, 0);
