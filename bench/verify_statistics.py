"""`pay10_verify` on a database whose tables were never analyzed after the backfill, against the same
database with fresh statistics (issue 11, item 5).

Takes a migrated, backfilled database (e.g. the one `bench/online_migrate.py --keep` leaves), turns
autovacuum off on the tables verify reads, and wipes their planner statistics as if they had never
been analyzed (pg_statistic rows deleted, reltuples -1, pg_stat counters reset; needs a superuser, as
the bench runs). Then `pay10_verify` twice: first on the never-analyzed tables (it ANALYZEs the stale
ones itself before planning), then with the statistics that left. Autovacuum is restored at the end.

Usage: .venv/bin/python bench/verify_statistics.py --database pay10_bench_online_1000000
Results: bench/results/verify_statistics-<invoices>.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from payments.services.statistics import VERIFY_TABLES  # noqa: E402  (a plain tuple; no Django set-up needed)


def wipe_statistics(database: str) -> None:
    with common.psycopg.connect(common.database_url(database), autocommit=True) as conn:
        for table in VERIFY_TABLES:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.execute("DELETE FROM pg_statistic WHERE starelid = ANY (%s::regclass[])", [list(VERIFY_TABLES)])
        conn.execute("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = ANY (%s::regclass[])", [list(VERIFY_TABLES)])
        conn.execute("SELECT pg_stat_reset()")


def restore_autovacuum(database: str) -> None:
    with common.psycopg.connect(common.database_url(database), autocommit=True) as conn:
        for table in VERIFY_TABLES:
            conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--old-code", help="also time pay10_verify of another checkout (e.g. `git worktree add "
                        "/tmp/old-main 844295b`) on the never-analyzed tables: the behaviour before issue 11")
    parser.add_argument("--old-timeout", type=float, default=900.0)
    args = parser.parse_args()
    with common.psycopg.connect(common.database_url(args.database)) as conn:
        invoices = conn.execute("SELECT count(*) FROM billing_invoice").fetchone()[0]
    old = None
    if args.old_code:
        wipe_statistics(args.database)
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "manage.py", "pay10_verify"], cwd=args.old_code, capture_output=True, text=True,
                timeout=args.old_timeout,
                env=os.environ | {"DATABASE_URL": common.database_url(args.database), "DJANGO_DEBUG": "true"},
            )
            old = {"seconds": time.perf_counter() - started, "passed": done.returncode == 0, "timed_out": False}
        except subprocess.TimeoutExpired:
            old = {"seconds": args.old_timeout, "passed": None, "timed_out": True}
    wipe_statistics(args.database)
    try:
        load = os.getloadavg()
        never = common.run_manage(args.database, "pay10_verify", check=False)
        analyzed = common.run_manage(args.database, "pay10_verify", check=False)
    finally:
        restore_autovacuum(args.database)
    result = {
        "invoices": invoices,
        "machine": common.machine(),
        "load_average_before": load,
        "never_analyzed_seconds": never.seconds,
        "analyzed_seconds": analyzed.seconds,
        "ratio": never.seconds / analyzed.seconds,
        "never_analyzed_passed": "✗" not in never.output,
        "analyzed_passed": "✗" not in analyzed.output,
        "output_tail": never.output[-600:],
        "old_code": {"path": args.old_code, **old} if old else None,
    }
    path = common.save_results(f"verify_statistics-{invoices}", result)
    sys.stdout.write(
        f"pay10_verify at {invoices:,} invoices: never analyzed {never.seconds:.1f} s, analyzed "
        f"{analyzed.seconds:.1f} s ({result['ratio']:.2f}x)\nresults: {path}\n"
    )


if __name__ == "__main__":
    main()
