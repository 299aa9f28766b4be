"""The database code of PAY-10 (PostgreSQL functions and triggers), in one place, as named versions.

Each module here is one version of one body of code and never changes once a migration installs it:
- `guards_v2`: the money-invariant guards as `0002_pay10_schema` installs them since 844295b
  (set-based notes, index probes). Version 1 is what main at a380abc installed (its text is in git
  history; it had the same object names, four functions with other bodies), and before it the
  row-level `*_recheck` triggers, whose names `guards_v2` lists to drop;
- `figures_v1`: the FIN-01/FIN-02 read model's upkeep as `0004_invoice_figures` installs it;
  `figures_v2` composes it from `rules.py` (`0010`); `figures_v3` forces its refresh's index probes
  only for fewer than `PROBE_LIMIT` ids (`0012_figures_refresh_plan`), and its refresh statement is
  the one the read-model build runs;
- `audit_truncate_v1`: the audit log's refusal of TRUNCATE, installed by `0008_audit_log_truncate_guard`.

A change to database code is a NEW module (`guards_v3`, ...) and a NEW migration with
`InstallDatabaseCode(new, previous=old)` (`payments/migrations/_operations.py`): forward it installs
the new version, backward the previous one. `0006_pay10_database_code` brings a database migrated
by any earlier main to today's versions: it replaces every function (CREATE OR REPLACE),
recreates only the triggers whose definition differs, and drops what earlier versions had and no
current version has.

Every version is described by a `DatabaseCode`: statements with no lock on an existing table
(tables of its own, functions) run in one short transaction; each trigger, which locks its table
(SHARE ROW EXCLUSIVE), is created in a short transaction of its own under `lock_timeout`, retried
with backoff.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatabaseCode:
    name: str
    # Statements that lock no existing table: CREATE ... IF NOT EXISTS of its own tables, CREATE OR
    # REPLACE FUNCTION. Run in order in one transaction.
    setup: tuple[str, ...]
    # trigger name -> (table, CREATE [CONSTRAINT] TRIGGER ...)
    triggers: dict[str, tuple[str, str]]
    # Signatures of its functions ("name(args)"), dropped by its removal after its triggers.
    functions: tuple[str, ...]
    # Tables of its own, dropped by its removal (after its triggers, before its functions).
    tables: tuple[str, ...] = ()
    # Objects of earlier versions this one no longer has: dropped when it is installed.
    retired_triggers: dict[str, str] = field(default_factory=dict)  # trigger name -> table
    retired_functions: tuple[str, ...] = ()

