"""Migration operations shared by the PAY-10 migrations. The loader skips this module (leading underscore).

Online on PostgreSQL (issue 11; docs/runbook.md "Schema changes on a live database"): a step that
touches an existing table takes its strong lock only briefly, in a short transaction of its own,
under `lock_timeout`, and is retried with backoff when the lock is not granted in time (GitLab's
`with_lock_retries`): a long report transaction then delays `migrate`, never the application behind
a queued ACCESS EXCLUSIVE lock for longer than one `lock_timeout`. A migration made of such steps is
`atomic = False`; each step checks first whether an earlier, interrupted `migrate` already made it,
so running `migrate` again finishes the job. When every attempt of a step times out, `migrate`
stops with one line (`LockRetriesExhausted`, a CommandError) and nothing of that step is applied.

- `Online(operation)`: any schema operation (CreateModel, AddField, AlterField, AddIndex, a CHECK
  on a new table) as one such step; the foreign keys it creates are added NOT VALID and validated
  on their own afterwards (VALIDATE takes SHARE UPDATE EXCLUSIVE: reads and writes go on).
- `AddCheckConstraintOnline`: a CHECK on an existing table: added NOT VALID (brief ACCESS
  EXCLUSIVE), then `VALIDATE CONSTRAINT` in its own statement (scans without blocking writes).
- `AddUniqueIndexConcurrently` / `AddIndexConcurrentlyOnPostgres`: indexes built CONCURRENTLY; an
  INVALID leftover of an interrupted build is dropped and built again.
- `InstallDatabaseCode(code, previous=...)`: a version of database code (`payments/database/`):
  functions in one short transaction (they lock no table), each trigger in its own step.

Elsewhere (SQLite: tests, `make demo`) every operation runs the plain way.
"""
from __future__ import annotations

import re
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import OperationalError, migrations, transaction
from django.db.backends.ddl_references import Statement

LOCK_NOT_AVAILABLE = "55P03"


class LockRetriesExhausted(CommandError):
    """A step got no lock in any attempt; `manage.py migrate` prints this one line and exits 1."""


def lock_schedule() -> list[tuple[int, float]]:
    """(lock_timeout in ms, pause in s before the next attempt) per attempt: short waits first, then
    longer ones up to the cap, with growing pauses between (the application runs in the pauses)."""
    attempts = max(1, int(getattr(settings, "PAY10_MIGRATION_LOCK_ATTEMPTS", 12)))
    cap_ms = max(1, int(getattr(settings, "PAY10_MIGRATION_LOCK_TIMEOUT_MS", 3000)))
    pause_cap = float(getattr(settings, "PAY10_MIGRATION_LOCK_PAUSE_S", 5.0))
    return [(min(cap_ms, 100 * 2**n), min(pause_cap, 0.5 * (n + 1))) for n in range(attempts)]


def _is_lock_timeout(error: Exception) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _postgres(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def _emit(schema_editor, line: str) -> None:
    schema_editor.collected_sql.append(line)


def run_locked(schema_editor, label: str, body) -> None:
    """`body()` as one step: its own transaction under `lock_timeout`, retried with backoff."""
    connection = schema_editor.connection
    if not _postgres(schema_editor):
        body()
        return
    schedule = lock_schedule()
    if schema_editor.collect_sql:  # sqlmigrate: show the step as it runs (squawk reads this)
        _emit(schema_editor, f"-- {label}: its own transaction, retried with backoff on lock timeout")
        _emit(schema_editor, "BEGIN;")
        _emit(schema_editor, f"SET LOCAL lock_timeout = '{schedule[-1][0]}ms';")
        _emit(schema_editor, "SET LOCAL statement_timeout = 0;")
        body()
        _emit(schema_editor, "COMMIT;")
        return
    started = time.monotonic()
    for attempt, (timeout_ms, pause) in enumerate(schedule, 1):
        try:
            with transaction.atomic(using=connection.alias):
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{timeout_ms}ms'")
                body()
            return
        except OperationalError as error:
            if not _is_lock_timeout(error):
                raise
            if attempt == len(schedule):
                raise LockRetriesExhausted(
                    f"{label}: no lock within lock_timeout in {attempt} attempts over "
                    f"{time.monotonic() - started:.0f} s (another transaction holds the table); "
                    f"this step changed nothing: run `manage.py migrate` again to finish"
                ) from None
            time.sleep(pause)


def run_unlocked(schema_editor, label: str, sql: str) -> None:
    """A statement that blocks neither reads nor writes (CREATE INDEX CONCURRENTLY, VALIDATE
    CONSTRAINT: SHARE UPDATE EXCLUSIVE), outside any transaction. It may wait (for older
    transactions, or for a conflicting DDL), but nothing of the application queues behind it, so it
    runs without lock_timeout rather than fail against a long report."""
    if schema_editor.collect_sql:
        _emit(schema_editor, f"-- {label}: SHARE UPDATE EXCLUSIVE only (reads and writes go on), no transaction")
        _emit(schema_editor, "SET lock_timeout = 0;")
        _emit(schema_editor, "SET statement_timeout = 0;")
    schema_editor.execute(sql, params=None)


# --- what the database already has (a `migrate` interrupted earlier committed some steps) -------

def _one(schema_editor, sql: str, params: list):
    if schema_editor.collect_sql:
        return None  # sqlmigrate shows every step
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _table_exists(schema_editor, table: str) -> bool:
    return bool(_one(schema_editor, "SELECT to_regclass(%s) IS NOT NULL", [table]))


def _column_exists(schema_editor, table: str, column: str) -> bool:
    return bool(_one(
        schema_editor,
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s"
        " AND NOT attisdropped)",
        [table, column],
    ))


def _constraint_validated(schema_editor, table: str, name: str) -> bool | None:
    """None when the table has no such constraint, else whether it is validated."""
    return _one(
        schema_editor,
        "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s",
        [table, name],
    )


def _index_valid(schema_editor, name: str) -> bool | None:
    """None when there is no such index, else whether it is valid (a failed CONCURRENTLY is not)."""
    return _one(
        schema_editor,
        "SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        [name],
    )


def _named_object_exists(schema_editor, table: str, name: str) -> bool:
    return _constraint_validated(schema_editor, table, name) is not None or _index_valid(schema_editor, name) is not None


def _validate_pending(schema_editor, table: str) -> None:
    """VALIDATE the constraints of `table` left NOT VALID (a run stopped between a step and its
    validation)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND NOT convalidated ORDER BY conname",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        run_unlocked(schema_editor, f"validate {name}",
                     f"ALTER TABLE {schema_editor.quote_name(table)} VALIDATE CONSTRAINT {schema_editor.quote_name(name)}")


class _ForeignKeysNotValid:
    """Within one step, the foreign keys the schema editor creates are added NOT VALID (a brief
    SHARE ROW EXCLUSIVE on the referenced table, no scan) and noted for a VALIDATE afterwards."""

    def __init__(self, schema_editor):
        self.schema_editor = schema_editor
        self.to_validate: list[tuple[str, str]] = []

    def __enter__(self):
        editor = self.schema_editor
        self.saved = editor.deferred_sql
        editor.deferred_sql = []
        editor.sql_create_column_inline_fk = None  # instance attribute: FKs of new columns deferred too
        return self

    def flush(self) -> None:
        """Run what the step deferred (its indexes, its foreign keys NOT VALID), inside the step."""
        editor = self.schema_editor
        for statement in editor.deferred_sql:
            if isinstance(statement, Statement) and statement.template == editor.sql_create_fk:
                statement.template = editor.sql_create_fk + " NOT VALID"
                self.to_validate.append((str(statement.parts["table"]), str(statement.parts["name"])))
            editor.execute(statement)
        editor.deferred_sql = []

    def __exit__(self, *exc):
        editor = self.schema_editor
        editor.deferred_sql = self.saved
        del editor.sql_create_column_inline_fk

    def validate(self) -> None:
        for table, name in self.to_validate:
            run_unlocked(self.schema_editor, f"validate {name}", f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


class Online(migrations.operations.base.Operation):
    """One schema operation as one online step on PostgreSQL (see the module's docstring)."""

    reduces_to_sql = True

    def __init__(self, operation):
        self.operation = operation

    @property
    def reversible(self):
        return self.operation.reversible

    def deconstruct(self):
        return self.__class__.__name__, [self.operation], {}

    def describe(self):
        return self.operation.describe()

    @property
    def migration_name_fragment(self):
        return self.operation.migration_name_fragment

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def _made(self, app_label, schema_editor, state) -> bool:
        """Whether the operation's effect is in the database (`state`: the state that has it)."""
        op = self.operation
        if isinstance(op, migrations.CreateModel):
            return _table_exists(schema_editor, state.apps.get_model(app_label, op.name)._meta.db_table)
        if isinstance(op, migrations.AddField):
            model = state.apps.get_model(app_label, op.model_name)
            return _column_exists(schema_editor, model._meta.db_table, model._meta.get_field(op.name).column)
        if isinstance(op, migrations.AddIndex):
            return _index_valid(schema_editor, op.index.name) is not None
        if isinstance(op, migrations.AddConstraint):
            model = state.apps.get_model(app_label, op.model_name)
            return _named_object_exists(schema_editor, model._meta.db_table, op.constraint.name)
        return False  # AlterField and others: idempotent, run again

    def _run(self, schema_editor, run) -> None:
        if not _postgres(schema_editor):
            run()
            return
        with _ForeignKeysNotValid(schema_editor) as foreign_keys:
            def body():
                run()
                foreign_keys.flush()

            run_locked(schema_editor, self.describe(), body)
        foreign_keys.validate()

    def _table(self, app_label, state) -> str | None:
        name = getattr(self.operation, "model_name", None) or getattr(self.operation, "name", None)
        try:
            return state.apps.get_model(app_label, name)._meta.db_table
        except (LookupError, TypeError):
            return None

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor) and self._made(app_label, schema_editor, to_state) \
                and not isinstance(self.operation, migrations.AlterField):
            # Made by an interrupted run, which may have stopped before validating its foreign keys.
            table = self._table(app_label, to_state)
            if table:
                _validate_pending(schema_editor, table)
            return
        self._run(schema_editor, lambda: self.operation.database_forwards(app_label, schema_editor, from_state, to_state))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor) and not schema_editor.collect_sql \
                and not isinstance(self.operation, migrations.AlterField) \
                and not self._made(app_label, schema_editor, from_state):
            return
        self._run(schema_editor, lambda: self.operation.database_backwards(app_label, schema_editor, from_state, to_state))


class AddCheckConstraintOnline(migrations.AddConstraint):
    """A CHECK constraint on an existing table: NOT VALID under a brief lock, then VALIDATE."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        table = model._meta.db_table
        if _constraint_validated(schema_editor, table, self.constraint.name) is None:
            statement = self.constraint.create_sql(model, schema_editor)
            statement.template += " NOT VALID"
            run_locked(schema_editor, f"add {self.constraint.name} NOT VALID", lambda: schema_editor.execute(statement))
        if not _constraint_validated(schema_editor, table, self.constraint.name):
            run_unlocked(
                schema_editor, f"validate {self.constraint.name}",
                f"ALTER TABLE {schema_editor.quote_name(table)} VALIDATE CONSTRAINT {schema_editor.quote_name(self.constraint.name)}",
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.collect_sql or _constraint_validated(schema_editor, model._meta.db_table, self.constraint.name) is not None:
            run_locked(schema_editor, f"drop {self.constraint.name}",
                       lambda: schema_editor.remove_constraint(model, self.constraint))


class AddUniqueIndexConcurrently(migrations.AddConstraint):
    """A conditional UniqueConstraint (a partial unique index) built CONCURRENTLY on PostgreSQL."""

    def _sql(self, model, schema_editor) -> str:
        sql = str(self.constraint.create_sql(model, schema_editor))
        assert sql.startswith("CREATE UNIQUE INDEX "), sql
        return sql.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY ", 1)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        name = schema_editor.quote_name(self.constraint.name)
        valid = _index_valid(schema_editor, self.constraint.name)
        if valid:
            return
        if valid is False:  # the leftover of an interrupted build
            run_unlocked(schema_editor, f"drop invalid {self.constraint.name}", f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        run_unlocked(schema_editor, f"build {self.constraint.name}", self._sql(model, schema_editor))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        name = schema_editor.quote_name(self.constraint.name)
        run_unlocked(schema_editor, f"drop {self.constraint.name}", f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """`AddIndex`, built and dropped CONCURRENTLY on PostgreSQL, the plain way elsewhere."""

    def _concurrently(self, schema_editor) -> dict:
        return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, **self._concurrently(schema_editor))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, **self._concurrently(schema_editor))


# --- database code (payments/database/) ----------------------------------------------------------

def _trigger_definition(schema_editor, name: str, table: str) -> str | None:
    return _one(
        schema_editor,
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = to_regclass(%s) AND t.tgname = %s",
        [table, name],
    )


def _normalized(definition: str) -> str:
    """A CREATE TRIGGER statement as pg_get_triggerdef prints it: unqualified names, the events in
    PostgreSQL's order (INSERT, DELETE, UPDATE, TRUNCATE)."""
    text = re.sub(r"\s+", " ", definition.replace("public.", "")).strip().rstrip(";")
    text = text.replace("CREATE OR REPLACE TRIGGER ", "CREATE TRIGGER ", 1)

    def events(match):
        listed = match.group(2).split(" OR ")
        return f"{match.group(1)} {' OR '.join(sorted(listed, key=EVENT_ORDER.index))} ON "

    return re.sub(r"\b(BEFORE|AFTER|INSTEAD OF) ((?:INSERT|DELETE|UPDATE|TRUNCATE)(?: OR (?:INSERT|DELETE|UPDATE|TRUNCATE))*) ON ",
                  events, text, count=1)


EVENT_ORDER = ["INSERT", "DELETE", "UPDATE", "TRUNCATE"]


def _install_code(schema_editor, code, *, retire: bool) -> None:
    execute = schema_editor.execute
    if retire:
        for name, table in code.retired_triggers.items():
            if schema_editor.collect_sql or _trigger_definition(schema_editor, name, table) is not None:
                run_locked(schema_editor, f"drop retired trigger {name}",
                           lambda name=name, table=table: execute(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
        if code.retired_functions:
            run_locked(schema_editor, f"drop retired functions of {code.name}", lambda: [
                execute(f"DROP FUNCTION IF EXISTS {function}") for function in code.retired_functions
            ])
    run_locked(schema_editor, f"functions of {code.name}", lambda: [execute(sql, params=None) for sql in code.setup])
    for name, (table, definition) in code.triggers.items():
        present = None if schema_editor.collect_sql else _trigger_definition(schema_editor, name, table)
        if present is not None and _normalized(present) == _normalized(definition):
            continue  # already today's: no lock taken
        if present is None or definition.startswith("CREATE CONSTRAINT TRIGGER "):
            # A constraint trigger (on a table of the code's own) cannot be replaced in place.
            def body(name=name, table=table, definition=definition, present=present):
                if present is not None:
                    execute(f"DROP TRIGGER {name} ON {table}")
                execute(definition)
        else:
            # CREATE OR REPLACE keeps to SHARE ROW EXCLUSIVE (reads go on); DROP would take ACCESS EXCLUSIVE.
            def body(definition=definition):
                execute(definition.replace("CREATE TRIGGER ", "CREATE OR REPLACE TRIGGER ", 1))

        run_locked(schema_editor, f"trigger {name} on {table}", body)


def _remove_code(schema_editor, code, *, keep=None) -> None:
    """Drop `code`'s triggers (each its own step), tables and functions, except what `keep` also has."""
    execute = schema_editor.execute
    keep_triggers = set(keep.triggers) if keep else set()
    keep_functions = set(keep.functions) if keep else set()
    keep_tables = set(keep.tables) if keep else set()
    for name, (table, _definition) in code.triggers.items():
        if name in keep_triggers:
            continue
        if schema_editor.collect_sql or _trigger_definition(schema_editor, name, table) is not None:
            run_locked(schema_editor, f"drop trigger {name} on {table}",
                       lambda name=name, table=table: execute(f"DROP TRIGGER IF EXISTS {name} ON {table}"))

    def rest():
        for table in code.tables:
            if table not in keep_tables:
                execute(f"DROP TABLE IF EXISTS {table}")
        for function in code.functions:
            if function not in keep_functions:
                execute(f"DROP FUNCTION IF EXISTS {function}")

    run_locked(schema_editor, f"tables and functions of {code.name}", rest)


class InstallDatabaseCode(migrations.operations.base.Operation):
    """Install a version of database code; backward, install `previous` (or remove it when None).
    Idempotent: functions are replaced, triggers recreated only when their definition differs."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, code, previous=None):
        self.code = code
        self.previous = previous

    def deconstruct(self):
        return self.__class__.__name__, [self.code], {"previous": self.previous}

    def describe(self):
        return f"Install database code: {self.code.name}"

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return
        if self.previous is not None and self.previous is not self.code:
            _remove_code(schema_editor, self.previous, keep=self.code)
        _install_code(schema_editor, self.code, retire=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return
        if self.previous is None:
            _remove_code(schema_editor, self.code)
            return
        if self.previous is not self.code:
            _remove_code(schema_editor, self.code, keep=self.previous)
        _install_code(schema_editor, self.previous, retire=False)
