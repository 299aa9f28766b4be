-- The raw SQL of pay10_verify's checks, hand-written, one statement each: the floor that
-- `pay10_verify` is compared with. Each SELECT returns the number of violations.
-- 1. per payment: active allocations + credits issued + refunds of unallocated money <= amount
SELECT COUNT(*) FROM payments_payment p
LEFT JOIN (SELECT a.payment_id, SUM(a.amount_cents) s FROM payments_allocation a
           LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id
           WHERE r.allocation_id IS NULL AND a.payment_id IS NOT NULL GROUP BY a.payment_id) al ON al.payment_id = p.id
LEFT JOIN (SELECT source_payment_id, SUM(amount_cents) s FROM payments_credit GROUP BY source_payment_id) c ON c.source_payment_id = p.id
LEFT JOIN (SELECT payment_id, SUM(amount_cents) s FROM payments_refund WHERE credit_id IS NULL GROUP BY payment_id) rf ON rf.payment_id = p.id
WHERE COALESCE(al.s, 0) + COALESCE(c.s, 0) + COALESCE(rf.s, 0) > p.amount_cents;
-- 2. per credit: active applications + refunds <= amount
SELECT COUNT(*) FROM payments_credit c
LEFT JOIN (SELECT a.credit_id, SUM(a.amount_cents) s FROM payments_allocation a
           LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id
           WHERE r.allocation_id IS NULL AND a.credit_id IS NOT NULL GROUP BY a.credit_id) al ON al.credit_id = c.id
LEFT JOIN (SELECT credit_id, SUM(amount_cents) s FROM payments_refund WHERE credit_id IS NOT NULL GROUP BY credit_id) rf ON rf.credit_id = c.id
WHERE COALESCE(al.s, 0) + COALESCE(rf.s, 0) > c.amount_cents;
-- 3. per invoice: active applied money <= amount
SELECT COUNT(*) FROM billing_invoice i
JOIN (SELECT a.invoice_id, SUM(a.amount_cents) s FROM payments_allocation a
      LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id
      LEFT JOIN payments_payment p ON p.id = a.payment_id
      WHERE r.allocation_id IS NULL AND (a.credit_id IS NOT NULL OR p.verification_status <> 'REJECTED')
      GROUP BY a.invoice_id) al ON al.invoice_id = i.id
WHERE al.s > i.amount_cents;
-- 4. orphans and cross tenant/currency allocations
SELECT COUNT(*) FROM payments_allocation a
LEFT JOIN billing_invoice i ON i.id = a.invoice_id
LEFT JOIN payments_payment p ON p.id = a.payment_id
LEFT JOIN payments_credit c ON c.id = a.credit_id
WHERE i.id IS NULL OR (a.payment_id IS NOT NULL AND p.id IS NULL) OR (a.credit_id IS NOT NULL AND c.id IS NULL)
   OR a.tenant_id <> i.tenant_id OR COALESCE(p.tenant_id, c.tenant_id) <> i.tenant_id
   OR COALESCE(p.currency, c.currency) <> i.currency;
-- 5. stored status equals today's verdict (migrated invoices)
SELECT COUNT(*) FROM billing_invoice i
JOIN payments_invoicemigration m ON m.invoice_id = i.id
LEFT JOIN (SELECT a.invoice_id, SUM(a.amount_cents) s FROM payments_allocation a
           LEFT JOIN payments_allocationreversal r ON r.allocation_id = a.id
           LEFT JOIN payments_payment p ON p.id = a.payment_id
           WHERE r.allocation_id IS NULL AND (a.credit_id IS NOT NULL OR p.verification_status = 'VERIFIED')
           GROUP BY a.invoice_id) paid ON paid.invoice_id = i.id
WHERE i.status <> CASE
    WHEN i.status IN ('DRAFT', 'VOID') THEN i.status
    WHEN COALESCE(paid.s, 0) >= i.amount_cents THEN 'PAID'
    WHEN i.due_date < CURRENT_DATE THEN 'OVERDUE'
    WHEN COALESCE(paid.s, 0) > 0 THEN 'PARTIALLY_PAID'
    ELSE 'ISSUED' END;
-- 6. every allocation has its audit row
SELECT COUNT(*) FROM payments_allocation a
WHERE NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.allocation_id = a.id)
  AND NOT a.backfilled;
-- 7. conservation per tenant: legacy paid figures equal backfilled allocations
SELECT COUNT(*) FROM (
    SELECT m.tenant_id FROM (SELECT i.tenant_id, SUM(im.legacy_paid_cents) s FROM payments_invoicemigration im
                             JOIN billing_invoice i ON i.id = im.invoice_id GROUP BY i.tenant_id) m
    FULL JOIN (SELECT tenant_id, SUM(amount_cents) s FROM payments_allocation WHERE backfilled GROUP BY tenant_id) a
           ON a.tenant_id = m.tenant_id
    WHERE COALESCE(m.s, 0) <> COALESCE(a.s, 0)) t;
-- not yet migrated invoices
SELECT COUNT(*) FROM billing_invoice i WHERE NOT EXISTS (SELECT 1 FROM payments_invoicemigration m WHERE m.invoice_id = i.id);
-- 7b. conservation per invoice: each migrated invoice's legacy paid figure equals its backfilled allocations
SELECT COUNT(*) FROM payments_invoicemigration m
LEFT JOIN (SELECT invoice_id, SUM(amount_cents) s FROM payments_allocation WHERE backfilled GROUP BY invoice_id) b
       ON b.invoice_id = m.invoice_id
WHERE m.legacy_paid_cents <> COALESCE(b.s, 0);
-- 7c. conservation per payment: every cent of a mapped legacy succeeded payment allocated or credited
SELECT COUNT(*) FROM payments_payment p
JOIN payments_paymentmigration pm ON pm.payment_id = p.id
JOIN billing_tenant t ON t.id = p.tenant_id
LEFT JOIN (SELECT payment_id, SUM(amount_cents) s FROM payments_allocation WHERE backfilled AND payment_id IS NOT NULL
           GROUP BY payment_id) a ON a.payment_id = p.id
LEFT JOIN (SELECT source_payment_id, SUM(amount_cents) s FROM payments_credit WHERE backfilled AND source_payment_id IS NOT NULL
           GROUP BY source_payment_id) c ON c.source_payment_id = p.id
WHERE p.status = 'SUCCEEDED' AND p.currency = t.currency AND COALESCE(p.channel, '') <> 'LEGACY'
  AND p.amount_cents <> COALESCE(a.s, 0) + COALESCE(c.s, 0);
-- 7d. payments in a currency not their tenant's (left for a person)
SELECT COUNT(*) FROM payments_payment p JOIN billing_tenant t ON t.id = p.tenant_id WHERE p.currency <> t.currency;
-- 6b. audit: backfilled allocations and credits covered by their invoice's or payment's backfill row
SELECT COUNT(*) FROM payments_allocation a
WHERE a.backfilled
  AND NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.allocation_id = a.id)
  AND NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.invoice_id = a.invoice_id AND l.backfilled);
SELECT COUNT(*) FROM payments_credit c
WHERE NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.credit_id = c.id)
  AND NOT (c.backfilled AND EXISTS (SELECT 1 FROM payments_paymentauditlog l
                                    WHERE l.payment_id = c.source_payment_id AND l.backfilled));
-- 6c. audit: reversals and PAY-10 payments
SELECT COUNT(*) FROM payments_allocationreversal r
WHERE NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.allocation_id = r.allocation_id
                  AND l.event_type IN ('ALLOCATION_REVERSED', 'PAYMENT_REJECTED', 'INVOICE_VOIDED', 'ORPHAN_REMOVED'));
SELECT COUNT(*) FROM payments_payment p
WHERE p.verification_status IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM payments_paymentmigration pm WHERE pm.payment_id = p.id)
  AND NOT EXISTS (SELECT 1 FROM payments_paymentauditlog l WHERE l.payment_id = p.id);
-- not yet mapped legacy payments, and active allocations hidden on invoices not yet migrated
SELECT COUNT(*) FROM payments_payment p WHERE p.verification_status IS NULL;
SELECT COUNT(*) FROM payments_allocation a
WHERE NOT EXISTS (SELECT 1 FROM payments_allocationreversal r WHERE r.allocation_id = a.id)
  AND EXISTS (SELECT 1 FROM billing_invoice i WHERE i.id = a.invoice_id)
  AND NOT EXISTS (SELECT 1 FROM payments_invoicemigration m WHERE m.invoice_id = a.invoice_id);
