"""`pay10_verify`'s checks: every money invariant of SPEC.md as set-based SQL, one module per family
(`money`: invariants 1-3, `orphans`: 4, `statuses`: 5, `audit`: 6, `conservation`: 7 and migration
progress, `read_model`: the read model and FIN-01's tenant balances, `baseline`: the `--baseline` comparison, `run`: all of them on one snapshot).

Each check is one or a few queries whose cost grows linearly with the tables: sums per payment,
credit or invoice are GROUP BY aggregates (raw SQL where three tables add up, the ORM otherwise),
"has no audit row" is an anti-join, orphans are one LEFT JOIN; never a Python loop over rows.
Only up to `MAX_EXAMPLES` offending rows are fetched to explain a failure. Each check returns a
`CheckResult`, built by the one helper `result.check_result`; `verification_run` runs them all on one snapshot (PostgreSQL REPEATABLE READ), so
writes the live app makes meanwhile cannot show up as differences between two checks.
Invariant 5 reads `invoices_with_balances`, the same definition FIN-01/FIN-02 show.

Scope with `tenant`: rows of that tenant (an allocation by its own or its invoice's tenant).

Choices made where SPEC.md is silent:
- Invariant 4 (no orphans): a reference to a missing invoice, payment or credit is an orphan
  whether or not the allocation is reversed; a tenant or currency mismatch matters only while the
  allocation is active (a reversed one moves no money and stays as history; that is how
  `pay10_cleanup_orphans` neutralises it).
- Invariant 6 (audit): a row the backfill created is covered by its backfill audit row (one per
  invoice or payment, SPEC.md), matched by invoice id or payment id; anything else needs a row
  naming it: an allocation by `allocation_id`, a reversal by `allocation_id` with one of
  `REVERSAL_EVENTS`, a credit by `credit_id`, a refund by a `PAYMENT_REFUNDED` row of its payment
  (counted per payment, as refunds have no id column in the audit table), a PAY-10 payment by
  `payment_id`.
- Invariant 7 (conservation): every backfilled allocation counts, reversed or not (a later
  reversal is new history, not a change to what the backfill did). A legacy succeeded payment is
  "fully placed" when its backfilled allocations plus its backfilled credits equal its amount; one
  that a person verified after PAY-10 (a non-backfill `PAYMENT_VERIFIED` audit row) is placed by
  the services and left out. A payment whose currency differs from its tenant's is the one
  exception: it is listed as needing a person and does not fail verification, unless the backfill
  allocated or credited it anyway.
"""
# The names the commands, the services and the tests use.
from payments.selectors.verification.audit import REVERSAL_EVENTS, unaudited_rows  # noqa: E402
from payments.selectors.verification.baseline import baseline_checks  # noqa: E402
from payments.selectors.verification.messages import *  # noqa: E402,F403 - every explanation text
from payments.selectors.verification.orphans import (  # noqa: E402
    orphan_counts,
    orphan_reason,
    orphaned_allocation_count,
    orphaned_allocations,
    check_no_orphans,
)
from payments.selectors.verification.read_model import check_read_model, check_tenant_balances  # noqa: E402
from payments.selectors.verification.result import MAX_EXAMPLES, CheckResult, check_result  # noqa: E402
from payments.selectors.verification.run import invariant_checks, one_snapshot, verification_run  # noqa: E402
