"""The words `pay10_verify` prints: every check's explanation when it holds and when it does not."""

PAYMENTS_OK = "no payment applies, credits or refunds more than its amount"
PAYMENTS_OVER_APPLIED = (
    "{count} payment(s) apply more than their amount: active allocations + credits issued + refunds of "
    "unallocated money exceed the payment (unallocated_cents < 0)"
)
CREDITS_OK = "no credit is applied or refunded beyond its amount"
CREDITS_OVER_APPLIED = "{count} credit(s) applied or refunded beyond their amount (remaining_cents < 0)"
INVOICES_OK = "no migrated invoice has more money applied (paid + pending) than its amount"
INVOICES_OVER_APPLIED = (
    "{count} invoice(s) have more money applied than their amount: {over_paid} by verified money and credit "
    "alone (negative outstanding), the rest once pending allocations are counted (negative balance)"
)
ORPHANS_OK = "every allocation's invoice and payment/credit exist, in the same tenant and currency"
ORPHANS_FOUND = (
    "{count} orphaned allocation(s): {missing} reference a missing invoice/payment/credit, {crossing} active "
    "one(s) cross tenant or currency; run `manage.py pay10_cleanup_orphans --dry-run`, then without --dry-run"
)
STATUSES_OK = "every migrated invoice's stored status equals the status engine's verdict for {today}"
STATUSES_STALE_BY_DATE = (
    "{count} stored status(es) differ from the engine's verdict for {today}, all because due dates have "
    "passed since they were stored: run `manage.py pay10_refresh_statuses`"
)
STATUSES_WRONG = (
    "{count} stored status(es) differ from the engine's verdict for {today} ({by_date} only because due dates "
    "have passed; `manage.py pay10_refresh_statuses` fixes those); the others disagree with the invoice's money"
)
AUDIT_OK = "every allocation, reversal, credit, refund and PAY-10 payment has its audit row"
AUDIT_MISSING = "{count} money row(s) without their audit row: {by_kind}"
CONSERVATION_OK = "per tenant, legacy paid totals equal backfilled allocations and every legacy succeeded payment is placed"
CONSERVATION_BROKEN = (
    "backfill did not conserve money: {tenants} tenant(s) whose legacy paid total differs from backfilled "
    "allocations ({totals}); {invoices} invoice(s) whose backfilled allocations differ from their legacy paid "
    "figure; {payments} legacy succeeded payment(s) not fully allocated or credited"
)
NEEDS_A_PERSON_NONE = "no legacy payment has a currency other than its tenant's"
NEEDS_A_PERSON = (
    "{count} payment(s) in a currency other than their tenant's: left unallocated by the backfill (SPEC.md's "
    "one exception to invariant 7); a person must resolve them — reported, not a failure"
)
NEEDS_A_PERSON_PLACED = (
    "{count} payment(s) in a currency other than their tenant's, of which the backfill allocated {allocated} and "
    "credited {credited} although SPEC.md says to leave them for a person"
)
MIGRATION_COMPLETE = "every invoice is migrated and every legacy payment mapped"
MIGRATION_INCOMPLETE = (
    "{invoices} invoice(s) not yet migrated and {payments} legacy payment(s) not yet mapped: run "
    "`manage.py pay10_backfill` (or pass --allow-partial while it runs)"
)
MIGRATION_PARTIAL_ALLOWED = (
    "{invoices} invoice(s) not yet migrated and {payments} legacy payment(s) not yet mapped (allowed by --allow-partial)"
)
MIGRATION_HIDDEN_ALLOCATIONS = (
    "{hidden} active allocation(s) apply money to invoices that are not migrated, so readers do not see it; "
    "a write to an invoice must migrate it first"
)


READ_MODEL_OK = "the FIN-01/FIN-02 read model equals the allocations ({invoices} invoice(s), {rows} rollup row(s))"
READ_MODEL_ABSENT = "no FIN-01/FIN-02 read model on this database (or a build is running): readers compute live"
READ_MODEL_DIFFERENT = (
    "the FIN-01/FIN-02 read model differs from the allocations: {invoices} invoice figure(s), {stray} figure(s) "
    "of deleted invoices, {rows} rollup or block row(s); run `manage.py pay10_rebuild_figures`"
)

BALANCES_OK = (
    "FIN-01's tenant balances equal the payments awaiting verification and the credits ({rows} tenant and currency "
    "pair(s))"
)
BALANCES_ABSENT = "no tenant balances on this database (or a build is running): FIN-01 computes them live"
BALANCES_DIFFERENT = (
    "FIN-01's tenant balances differ from the payments and credits for {count} tenant and currency pair(s); "
    "run `manage.py pay10_rebuild_figures --only balances`"
)


FIN01_EXACT_FIELDS = (
    "invoicedCents", "collectedCents", "outstandingCents", "overdueCents", "pendingVerificationCents", "byStatus", "aging",
)
FIN01_OK = "FIN-01 ALL_TIME totals per currency equal the baseline's (engine verdicts for {as_of})"
FIN01_DIFFERENT = "{count} FIN-01 figure(s) differ from the baseline (engine verdicts for {as_of}); money was not conserved"
CREDIT_OK = "unapplied credit changed only by the credit the backfill created{by_reason}"
CREDIT_DIFFERENT = (
    "unapplied credit changed by more than the credit the backfill created, in {count} currency(ies){by_reason}"
)
STATUS_COUNTS_OK = "invoice count and amount by stored status equal the baseline's, after {moved} status change(s) the backfill recorded"
STATUS_COUNTS_DIFFERENT = (
    "{count} difference(s) in invoice count/amount by stored status not explained by the backfill's "
    "STATUS_CHANGED deviations ({unexplained} invoice(s) changed status without one)"
)
FIN02_OK = "FIN-02 page 1 ({rows} invoice(s)): paid and balance equal the baseline's, status differences explained"
FIN02_DIFFERENT = "{count} FIN-02 page-1 row(s) differ from the baseline: paid/balance changed, invoice missing or status changed unexplained"

