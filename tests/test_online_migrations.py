"""Online migrations on PostgreSQL (issue 11): lock timeouts and retries, a database of an older main
upgraded to exactly a fresh `migrate`'s state, and the exact way back to the legacy state.

The databases here are scratch databases of their own, named after the test database (so parallel
runs on one server do not collide), migrated by `manage.py` in a child process as an operator would.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

pytestmark = [pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


def _url(name: str) -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name}"


def _scratch_name(suffix: str) -> str:
    return f"{connection.settings_dict['NAME']}_{suffix}"[:63]


def _admin() -> psycopg.Connection:
    return psycopg.connect(_url("postgres"), autocommit=True)


@pytest.fixture
def scratch():
    """scratch(suffix) -> a new empty database's name; every one is dropped at the end."""
    made = []

    def make(suffix: str) -> str:
        name = _scratch_name(suffix)
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    yield make
    with _admin() as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(database: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=os.environ | {"DATABASE_URL": _url(database), "DJANGO_DEBUG": "true"} | env,
    )


def migrate(database: str, *args: str, **env: str) -> None:
    done = manage(database, "migrate", *args, "--verbosity", "0", **env)
    assert done.returncode == 0, done.stderr[-3000:]


# Runs the old main's manage.py with its own packages only: the editable install of today's checkout
# (a finder that maps `billing`, `payments` and `config` to it) would otherwise lend the old code
# today's modules wherever the old tree lacks one (e.g. `payments/admin.py` before it existed).
OLD_MAIN_ALONE = """
import runpy, sys
sys.meta_path[:] = [finder for finder in sys.meta_path if "__editable__" not in getattr(finder, "__module__", "")]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if "__editable__" not in getattr(hook, "__module__", "")]
sys.path_importer_cache.clear()
sys.path.insert(0, ".")
sys.argv = ["manage.py", *sys.argv[1:]]
runpy.run_path("manage.py", run_name="__main__")
"""


def migrate_with_old_main(database: str, commit: str, tmp_path: Path) -> None:
    """`manage.py migrate` with the code of main at `commit` (from this repository's history, through
    `git archive`), as a database of that time was migrated."""
    old = tmp_path / commit
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    done = subprocess.run(
        [sys.executable, "-c", OLD_MAIN_ALONE, "migrate", "--verbosity", "0"],
        cwd=old, capture_output=True, text=True, timeout=600,
        env=os.environ | {"DATABASE_URL": _url(database), "DJANGO_DEBUG": "true"},
    )
    assert done.returncode == 0, done.stderr[-3000:]


OURS = "(c.relname LIKE 'billing\\_%' OR c.relname LIKE 'payments\\_%' OR c.relname LIKE 'pay10\\_%')"


def snapshot(database: str) -> dict:
    """Everything that defines the schema of billing, payments and PAY-10's database code."""
    queries = {
        "functions": """
            SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
            FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace""",
        "triggers": f"""
            SELECT c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace""",
        "indexes": f"""
            SELECT c.relname, pg_get_indexdef(c.oid) || ' valid=' || x.indisvalid
            FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
            WHERE c.relnamespace = 'public'::regnamespace AND {OURS}""",
        "constraints": f"""
            SELECT c.relname || '.' || k.conname,
                   pg_get_constraintdef(k.oid) || ' validated=' || k.convalidated
                   || ' deferrable=' || k.condeferrable || ' deferred=' || k.condeferred
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
            WHERE c.relnamespace = 'public'::regnamespace AND {OURS}""",
        "columns": f"""
            SELECT c.relname || '.' || a.attname,
                   format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
                   || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' identity=' || a.attidentity::text
                   || ' position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
              AND NOT a.attisdropped AND {OURS}""",
        "tables": f"""
            SELECT c.relname, c.relkind::text || ' persistence=' || c.relpersistence::text
            FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
              AND {OURS}""",
    }
    with psycopg.connect(_url(database)) as conn:
        return {kind: dict(conn.execute(sql).fetchall()) for kind, sql in queries.items()}


def _differences(left: dict, right: dict) -> list[str]:
    found = []
    for kind in left:
        for key in sorted(set(left[kind]) | set(right[kind])):
            if left[kind].get(key) != right[kind].get(key):
                found.append(f"{kind} {key}:\n  {left[kind].get(key)}\n  {right[kind].get(key)}")
    return found


def assert_same(left: dict, right: dict) -> None:
    found = _differences(left, right)
    assert not found, "\n".join(found)


@pytest.fixture
def fresh(scratch) -> dict:
    name = scratch("fresh")
    migrate(name)
    return snapshot(name)


@pytest.mark.parametrize("commit", ["844295b", "a380abc"])
def test_a_database_of_an_older_main_upgrades_to_exactly_a_fresh_migrate(fresh, scratch, commit, tmp_path):
    """A database migrated by main at `commit` (844295b: the main before issue 11, 0005 its head;
    a380abc: 0002 its head, four guard functions of another body), then today's `migrate`: the very
    state of a fresh database: functions, triggers, indexes, constraints, columns."""
    name = scratch(f"up{commit}")
    migrate_with_old_main(name, commit, tmp_path)
    before = snapshot(name)
    if commit == "a380abc":  # the drift of issue 11: other bodies of guard functions
        assert [key for key in before["functions"] if before["functions"][key] != fresh["functions"].get(key)
                and key.startswith("pay10_guard")], "the fixture should carry a380abc's older guards"
    migrate(name)
    assert_same(snapshot(name), fresh)


def test_reversal_to_the_legacy_state_is_exact(scratch):
    legacy = scratch("legacy")
    migrate(legacy, "payments", "0001_initial")
    there_and_back = scratch("back")
    migrate(there_and_back)
    migrate(there_and_back, "payments", "0001_initial")
    assert_same(snapshot(there_and_back), snapshot(legacy))
    # ... and forward again ends where a fresh migrate does (every step finds nothing left over)
    migrate(there_and_back)
    migrate(legacy)
    assert_same(snapshot(there_and_back), snapshot(legacy))


def _hold(database: str, sql: str, ready: threading.Event, release: threading.Event) -> None:
    with psycopg.connect(_url(database)) as conn:
        conn.execute(sql)  # a transaction stays open until release
        ready.set()
        release.wait(120)
        conn.rollback()


def test_a_held_lock_makes_a_step_retry_then_fail_with_one_line_and_migrate_again_finishes(scratch, fresh):
    name = scratch("locked")
    migrate(name, "payments", "0001_initial")
    ready, release = threading.Event(), threading.Event()
    # An ordinary finance export: a long transaction that read payments (ACCESS SHARE until it ends).
    holder = threading.Thread(target=_hold, args=(name, "SELECT count(*) FROM payments_payment", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        started = time.monotonic()
        failed = manage(
            name, "migrate", "--verbosity", "0",
            PAY10_MIGRATION_LOCK_ATTEMPTS="3", PAY10_MIGRATION_LOCK_TIMEOUT_MS="200", PAY10_MIGRATION_LOCK_PAUSE_S="0.2",
        )
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("LockRetriesExhausted: ") and "in 3 attempts" in lines[0], lines[0]
    assert "run `manage.py migrate` again" in lines[0]
    # three attempts of 100, 200 and 200 ms with pauses of 0.2 s: the step gave up soon, not after the report
    assert elapsed < 30
    with psycopg.connect(_url(name)) as conn:
        # the steps before it committed (new tables), the failed one (a column of payments) did not
        assert conn.execute("SELECT to_regclass('payments_allocation') IS NOT NULL").fetchone()[0]
        assert conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'payments_payment' AND column_name = 'channel'"
        ).fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM django_migrations WHERE app = 'payments' AND name = '0002_pay10_schema'"
        ).fetchone()[0] == 0
    migrate(name)  # the report is gone: the same command finishes the job
    assert_same(snapshot(name), fresh)


def test_a_step_waits_for_a_short_lock_and_goes_on(scratch, fresh):
    """A lock held for less than the retries last only delays `migrate`."""
    name = scratch("waits")
    migrate(name, "payments", "0001_initial")
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(name, "SELECT count(*) FROM payments_payment", ready, release))
    holder.start()
    assert ready.wait(30)
    threading.Timer(1.5, release.set).start()
    try:
        done = manage(name, "migrate", "--verbosity", "0",
                      PAY10_MIGRATION_LOCK_ATTEMPTS="8", PAY10_MIGRATION_LOCK_TIMEOUT_MS="200",
                      PAY10_MIGRATION_LOCK_PAUSE_S="0.5")
    finally:
        release.set()
        holder.join()
    assert done.returncode == 0, done.stderr
    assert_same(snapshot(name), fresh)


def test_migrate_again_finishes_what_an_interrupted_run_left_half_done(scratch):
    """A run that stopped after a step but before its VALIDATE, and a concurrent index build that
    failed (INVALID): `migrate` again validates the one and rebuilds the other, skipping the rest."""
    done = scratch("halfdone")
    migrate(done, "payments", "0002_pay10_schema")
    half = scratch("half")
    migrate(half, "payments", "0002_pay10_schema")
    with psycopg.connect(_url(half), autocommit=True) as conn:
        fk = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'payments_allocation'::regclass AND contype = 'f'"
            " AND confrelid = 'billing_invoice'::regclass"
        ).fetchone()[0]
        definition = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", [fk]
        ).fetchone()[0]
        conn.execute(f'ALTER TABLE payments_allocation DROP CONSTRAINT "{fk}"')
        conn.execute(f'ALTER TABLE payments_allocation ADD CONSTRAINT "{fk}" {definition} NOT VALID')
        conn.execute("ALTER TABLE payments_payment DROP CONSTRAINT payments_payment_channel_valid")
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'payments_payment_idempotency_key_unique_per_tenant'::regclass"
        )
        conn.execute("DELETE FROM django_migrations WHERE app = 'payments' AND name = '0002_pay10_schema'")
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = %s", [fk]).fetchone()[0] is False
    migrate(half, "payments", "0002_pay10_schema")
    assert_same(snapshot(half), snapshot(done))


def test_a_database_at_0010_with_money_upgrades_to_a_fresh_migrate_and_builds_exact_tenant_balances(fresh, scratch):
    """`0011_tenant_balances` on a database that already holds money: the catalog of a fresh migrate,
    and balances built equal to what FIN-01 computes live (a legacy pending payment counts; a credit
    of a rejected payment holds nothing)."""
    name = scratch("up0010")
    migrate(name, "auth")  # permission names of today's length first
    migrate(name, "payments", "0010_pay10_database_code_v3")
    with psycopg.connect(_url(name), autocommit=True) as conn:
        conn.execute("INSERT INTO billing_tenant (id, name, currency, created_at) VALUES ('acme', 'Acme', 'KES', now())")
        payment = (
            "INSERT INTO payments_payment (tenant_id, amount_cents, currency, method, reference, status, received_at, "
            "created_at, verification_status) VALUES ('acme', %s, 'KES', 'card', '', %s, now(), now(), %s) RETURNING id"
        )
        conn.execute(payment, [500, "PENDING", None])
        conn.execute(payment, [700, "PENDING", "PENDING"])
        verified = conn.execute(payment, [1_000, "SUCCEEDED", "VERIFIED"]).fetchone()[0]
        rejected = conn.execute(payment, [300, "FAILED", "REJECTED"]).fetchone()[0]
        credit = (
            "INSERT INTO payments_credit (tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, "
            "created_at) VALUES ('acme', 'KES', %s, %s, 'overpayment', false, now())"
        )
        conn.execute(credit, [400, verified])
        conn.execute(credit, [200, rejected])
    migrate(name)
    assert_same(snapshot(name), fresh)
    with psycopg.connect(_url(name)) as conn:
        assert conn.execute("SELECT count(*) FROM payments_tenantbalancebuild").fetchone()[0] == 0
        assert conn.execute(
            "SELECT tenant_id, currency, sum(pending_verification_cents), sum(unapplied_credit_cents) "
            "FROM payments_tenantbalance GROUP BY 1, 2"
        ).fetchall() == [("acme", "KES", 1_200, 400)]
