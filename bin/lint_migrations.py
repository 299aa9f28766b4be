"""squawk (PostgreSQL migration linter, PyPI `squawk-cli`) over the SQL of every migration of billing
and payments, as `manage.py sqlmigrate` prints it (`MigrationLoader.collect_sql`, the very call
sqlmigrate makes), run by `.ci/run`. Exit 1 on a finding about an EXISTING table; what a migration
does to tables it creates itself (empty, nobody reads or writes them yet) is not a risk to a live
database and is left out. `RunPython` has no SQL to show: the PAY-10 migrations put their database
code in operations that do (`payments/migrations/_operations.py`).

Needs PostgreSQL (`DATABASE_URL`; any database of the server: nothing is written).
Usage: .venv/bin/python bin/lint_migrations.py [-v]
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQUAWK = Path(sys.executable).with_name("squawk")
APPS = ("billing", "payments")

# Rules left out everywhere, each for its reason:
EXCLUDED = {
    # Every online step checks the catalog before it runs (`_operations.py`: `_made`, `_index_valid`,
    # trigger definitions), so a `migrate` run again after an interruption skips what is done;
    # squawk cannot see that check and asks for IF NOT EXISTS instead.
    "prefer-robust-stmts",
    # The functions dropped are PAY-10's own trigger functions (the reverse of the code that created
    # them, or retired versions), always after the triggers that call them: no caller is left.
    "ban-drop-function",
    # Column types are the contract's (SPEC.md) and Django's (CharField -> varchar(n), integer
    # fields): these rules warn about a FUTURE change of such a column, which would be its own
    # migration, linted then. They say nothing about a lock taken by these migrations.
    "prefer-text-field",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-timestamptz",
}

# Landed migrations left as they are, each for its reason (a landed migration is never edited):
LANDED = {
    # The legacy schema itself (SPEC.md): production already has these tables; `migrate` creates them
    # only on an empty database (tests, demo, a new installation), where nobody waits on them.
    "billing.0001_initial": "the legacy schema, created on empty databases only",
    "payments.0001_initial": "the legacy schema, created on empty databases only",
    # A new, empty table's foreign keys to billing_tenant and auth_user: nothing to scan, but the ALTER
    # takes SHARE ROW EXCLUSIVE on the referenced tables (blocks their writes, not reads) without a
    # lock_timeout. Tenants and users are written rarely; a later migration that touches an existing
    # table uses `payments/migrations/_operations.py` and is linted here.
    "billing.0002_tenant_member": "landed before issue 11; foreign keys of a new empty table only",
}

# Statements that take only SHARE UPDATE EXCLUSIVE (reads and writes of the table go on; nothing of
# the application queues behind them): they run without lock_timeout on purpose, since a long report
# may make them wait (CREATE INDEX CONCURRENTLY waits for older transactions) without harm.
NON_BLOCKING = re.compile(
    r"^\s*(CREATE (UNIQUE )?INDEX CONCURRENTLY|DROP INDEX CONCURRENTLY|ALTER TABLE \S+ VALIDATE CONSTRAINT)", re.I
)
TIMEOUT_RULES = {"require-lock-timeout", "require-statement-timeout"}

CREATED = re.compile(r"CREATE (?:UNLOGGED |TEMPORARY )?TABLE (?:IF NOT EXISTS )?\"?(\w+)\"?", re.I)
TOUCHED = re.compile(
    r"(?:ALTER TABLE|DROP TABLE(?: IF EXISTS)?|TRUNCATE|LOCK TABLE|REFERENCES|\bON)\s+(?:ONLY\s+)?\"?(?:public\.)?(\w+)\"?",
    re.I,
)


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    import django

    django.setup()


def migration_sql() -> list[tuple[str, list[str]]]:
    """(app.migration, its statements as sqlmigrate prints them), in the order `migrate` applies them."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if connection.vendor != "postgresql":
        sys.exit("lint_migrations: DATABASE_URL must point at PostgreSQL")
    loader = MigrationExecutor(connection).loader
    ordered = []  # the order `migrate` applies them in on an empty database
    for target in loader.graph.leaf_nodes():
        for node in loader.graph.forwards_plan(target):
            if node not in ordered:
                ordered.append(node)
    return [
        (f"{app}.{name}", loader.collect_sql([(loader.graph.nodes[(app, name)], False)]))
        for app, name in ordered
        if app in APPS
    ]


def lint(name: str, statements: list[str], verbose: bool) -> list[str]:
    text, spans, line = [], [], 1
    for statement in statements:
        lines = statement.count("\n") + 1
        spans.append((line, line + lines - 1, statement))
        text.append(statement)
        line += lines
    with tempfile.NamedTemporaryFile("w", suffix=f"-{name}.sql", delete=False) as handle:
        handle.write("\n".join(text) + "\n")
        path = handle.name
    try:
        run = subprocess.run(
            [str(SQUAWK), "--reporter", "json", "--pg-version", "15",
             "--exclude", ",".join(sorted(EXCLUDED)), path],
            capture_output=True, text=True,
        )
    finally:
        os.unlink(path)
    findings = json.loads(run.stdout or "[]")
    created: set[str] = set()
    created_before: dict[int, set[str]] = {}
    for index, (_first, _last, statement) in enumerate(spans):
        created_before[index] = set(created)
        created.update(match.lower() for match in CREATED.findall(statement))
    problems = []
    for finding in findings:
        index = next((i for i, (first, last, _s) in enumerate(spans) if first <= finding["line"] + 1 <= last), None)  # squawk counts lines from 0
        statement = spans[index][2] if index is not None else ""
        tables = {t.lower() for t in TOUCHED.findall(statement)} - {"delete", "update", "insert"}
        new_here = created_before.get(index, set()) | {t.lower() for t in CREATED.findall(statement)}
        if tables and tables <= new_here:
            continue  # only tables this migration creates: empty, not yet in use
        if finding["rule_name"] in TIMEOUT_RULES and NON_BLOCKING.search(statement):
            continue
        problem = f"{name}: {finding['rule_name']}: {finding['message']}\n    {statement.strip()[:300]}"
        problems.append(problem)
    if verbose:
        sys.stdout.write(f"{name}: {len(statements)} statements, {len(findings)} squawk findings, {len(problems)} on existing tables\n")
    return problems


def main() -> int:
    verbose = "-v" in sys.argv
    _setup_django()
    problems = []
    for name, statements in migration_sql():
        found = lint(name, statements, verbose)
        if name in LANDED:
            if verbose and found:
                sys.stdout.write(f"{name}: {len(found)} left as landed ({LANDED[name]})\n")
            continue
        problems += found
    for problem in problems:
        sys.stdout.write(problem + "\n")
    if problems:
        sys.stdout.write(f"lint_migrations: {len(problems)} unsafe operation(s) on existing tables\n")
        return 1
    sys.stdout.write("lint_migrations: no unsafe operation on an existing table\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
