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
