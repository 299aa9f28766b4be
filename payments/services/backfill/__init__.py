"""The PAY-10 backfill engine: legacy invoices and payments onto the allocation model, online.

Used by `manage.py pay10_backfill`, by the data migration `payments 0003_pay10_backfill` (which
passes its historical `apps`: the run, its batches and the reverse use only the models it is given)
and, one row at a time, by every service about to write to a not-yet-migrated invoice or payment
(`first_write`). All three go through the same batch code (`batch`): on PostgreSQL locked, planned
and written in SQL (`sql_batch`, its rules rendered by `sql_rules`); elsewhere read and lock
(`readers`), plan (`payments.domain.backfill`), write set-based (`writer`, audit rows from
`audit_payload`); the same rows either way.

Modules: `common` (messages, models, a batch's tally), `locks` (runner lock, shards), `sql_batch`,
`sql_rules`, `readers`, `writer`, `audit_payload`, `batch`, `first_write`, `run` (a whole run and its summary), `reverse`.
The deviations report is a read: `payments.selectors.backfill_deviations`.

How a run goes:
- one runner at a time (`backfill_lock`: a PostgreSQL advisory lock, or a file lock on SQLite);
- an upper bound on invoice and payment ids is fixed when a run starts (`BackfillRun`);
- pass 1, keyset batches over invoice id: each batch is ONE transaction that locks its invoices
  (`FOR UPDATE`, ascending id), then their payments, skips whatever is already migrated, writes
  every row of the batch and the run's cursor. A run killed anywhere leaves whole batches only; the
  next run resumes the newest unfinished run of the same scope, and already migrated rows are
  skipped either way, so no money row is ever written twice;
- pass 2, keyset batches over legacy payments no invoice took (unlinked, linked to another tenant's
  invoice, linked to an invoice beyond the bound);
- the readers show a not-yet-migrated invoice with its legacy paid figure and a migrated one with
  its allocations, which equal that figure exactly, so FIN-01 never moves;
- run by `pay10_backfill`, a console (`payments.services.backfill_control`) acts between batches:
  the operator's pause/resume/cancel, the adaptive batch size, waits on replication lag and long
  transactions, progress on the run row, one log line per batch, the FIN-01 parity gate.
"""
from payments.services.backfill.common import (
    ADVISORY_LOCK_KEY,
    BACKFILL_ALREADY_RUNNING,
    BACKFILL_NEEDS_TRANSACTION,
    BACKFILL_SHARD_ALREADY_RUNNING,
    BAD_SHARD,
    DEFAULT_BATCH_SIZE,
    KEY_COLLISION,
    REVERSE_REFUSED,
    BackfillError,
)
from payments.services.backfill.first_write import invoice_migrate_if_needed, payment_migrate_if_needed
from payments.services.backfill.locks import Shard, backfill_lock
from payments.services.backfill.reverse import backfill_reverse
from payments.services.backfill.run import BackfillProgress, BackfillSummary, backfill_run

__all__ = [
    "ADVISORY_LOCK_KEY", "BACKFILL_ALREADY_RUNNING", "BACKFILL_NEEDS_TRANSACTION", "BACKFILL_SHARD_ALREADY_RUNNING",
    "BAD_SHARD", "DEFAULT_BATCH_SIZE", "KEY_COLLISION", "REVERSE_REFUSED", "BackfillError", "BackfillProgress",
    "BackfillSummary", "Shard", "backfill_lock", "backfill_reverse", "backfill_run", "invoice_migrate_if_needed",
    "payment_migrate_if_needed",
]
