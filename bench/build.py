"""The runbook's final `migrate` on a backfilled database, taken apart: each migration's own time and,
for the read model's build (`0005_invoice_figures_build`), where one batch's time goes.

    .venv/bin/python bench/build.py --database pay10_bench_1000000_backfilled [--batch-size 20000]

`--database` is a database after `pay10_backfill`, before the final `migrate` (`bench/backfill.py
--keep-backfilled` keeps one per size); it stays as it is: the script works on a copy (`<database>_build`), dropped at the end.
On the copy: `migrate payments 0004_invoice_figures`; then `EXPLAIN (ANALYZE, BUFFERS)` of one build
batch (figures v3's refresh statement over `--batch-size` invoice ids from the middle of the table) in
a transaction rolled back; then `migrate` to the end with each migration's time (`--verbosity 2`).
Results: bench/results/build-<invoices>.json; bench/report.py quotes them beside the bench run's
build figure when the build misses its target.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from backfill import migration_seconds  # noqa: E402

sys.path.insert(0, str(common.ROOT))
from payments.database import figures_v3  # noqa: E402  (plain SQL text: no Django set-up needed)

_MIDDLE_BATCH = (
    "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM (SELECT id FROM billing_invoice "
    "WHERE id >= (SELECT (min(id) + max(id)) / 2 FROM billing_invoice) ORDER BY id LIMIT %s) batch"
)


def _scans(node: dict, found: list[dict]) -> list[dict]:
    """Every scan node of a plan: its table, rows and own time (a scan's time is its own)."""
    if node["Node Type"].endswith("Scan") and "Relation Name" in node:
        found.append({
            "scan": node["Node Type"], "table": node["Relation Name"],
            "rows": node["Actual Rows"] * node["Actual Loops"], "ms": node["Actual Total Time"] * node["Actual Loops"],
        })
    for child in node.get("Plans", []):
        _scans(child, found)
    return found


def batch_plan(database: str, batch_size: int) -> dict:
    with common.psycopg.connect(common.database_url(database)) as conn:
        ids = conn.execute(_MIDDLE_BATCH, [batch_size]).fetchone()[0]
        sql = figures_v3.refresh_sql("%(ids)s::bigint[]")
        started = time.perf_counter()
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, {"ids": ids}).fetchone()[0][0]
        seconds = time.perf_counter() - started
        conn.rollback()
    scans = sorted(_scans(plan["Plan"], []), key=lambda scan: -scan["ms"])
    return {"invoices": len(ids), "seconds": seconds, "execution_ms": plan["Execution Time"], "scans": scans}


def measure(database: str, batch_size: int) -> dict:
    copy = f"{database}_build"
    common.recreate_database(copy, template=database)
    try:
        common.run_manage(copy, "migrate", "payments", "0004_invoice_figures", "--verbosity", "0")
        with common.psycopg.connect(common.database_url(copy)) as conn:
            invoices = conn.execute("SELECT COUNT(*) FROM billing_invoice").fetchone()[0]
            payments = conn.execute("SELECT COUNT(*) FROM payments_payment").fetchone()[0]
        plan = batch_plan(copy, batch_size)
        rest = common.run_manage(copy, "migrate", "--verbosity", "2")
    finally:
        common.drop_database(copy)
    return {
        "database": database, "invoices": invoices, "payments": payments, "batch": plan,
        "migrate_after_0004_seconds": rest.seconds, "migrations": migration_seconds(rest.output),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="a database after pay10_backfill, before the final migrate")
    parser.add_argument("--batch-size", type=int, default=20_000, help="invoices in the batch explained (the build's own)")
    args = parser.parse_args()
    result = measure(args.database, args.batch_size)
    result["machine"] = common.machine()
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    size = round(result["invoices"], -4) if result["invoices"] >= 10_000 else result["invoices"]
    path = common.save_results(f"build-{size}", result)
    print(json.dumps({k: result[k] for k in ("invoices", "migrate_after_0004_seconds")} | {
        "batch_ms": result["batch"]["execution_ms"], "slowest_scans": result["batch"]["scans"][:3]}, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
