"""Backfill and verify at scale, side by side with their floors and the naive loop.

    .venv/bin/python bench/backfill.py --invoices 100000 [--naive-sample 2000] [--batch-size 5000]

For one size, in one run, on fresh PostgreSQL databases:
1. legacy data from `pay10_seed_legacy`, then the PAY-10 schema (`migrate payments 0002_pay10_schema`);
2. the floor: bench/floor.sql on a copy of that database;
3. the naive Django loop (bench/naive_backfill.py) on another copy, over a sample;
4. `pay10_backfill` (wall time and the process's peak RSS), optionally as K shards at once;
5. `pay10_verify` against bench/verify_floor.sql, the raw SQL of its checks;
6. the rest of the runbook's `migrate` (0004/0005 build the FIN-01/FIN-02 read model: timed), then
   FIN-01/FIN-02 latency from the read model and, as the baseline, computed live (bench/reads.py);
7. what the read model's upkeep costs a payment operation, against the same operation without it
   (bench/writes.py).
Results are written to bench/results/backfill-<size>.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import reads  # noqa: E402
import writes  # noqa: E402

BENCH = Path(__file__).resolve().parent


def _statements(path: Path) -> list[str]:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def prepare_legacy(size: int, tenant: str) -> tuple[str, dict]:
    base = f"pay10_bench_{size}"
    common.recreate_database(base)
    common.run_manage(base, "migrate", "payments", "0001_initial", "--verbosity", "0")
    seeded = common.run_manage(base, "pay10_seed_legacy", "--tenant", tenant, "--invoices", str(size), "--seed", "1")
    common.run_manage(base, "migrate", "payments", "0002_pay10_schema", "--verbosity", "0")
    common.run_manage(base, "migrate", "knox", "--verbosity", "0")
    with common.psycopg.connect(common.database_url(base), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        counts = {
            "invoices": conn.execute("SELECT COUNT(*) FROM billing_invoice").fetchone()[0],
            "legacy_payments": conn.execute("SELECT COUNT(*) FROM payments_payment").fetchone()[0],
            "paid_or_part_paid": conn.execute(
                "SELECT COUNT(*) FROM billing_invoice WHERE status IN ('PAID','PARTIALLY_PAID')"
            ).fetchone()[0],
        }
    return base, {"seed_seconds": seeded.seconds, **counts}


def measure_floor(base: str) -> dict:
    copy = f"{base}_floor"
    common.recreate_database(copy, template=base)
    sql = (BENCH / "floor.sql").read_text()
    seconds = common.timed_sql(copy, sql)
    with common.psycopg.connect(common.database_url(copy)) as conn:
        rows = {
            "allocations": conn.execute("SELECT COUNT(*) FROM payments_allocation").fetchone()[0],
            "synthetic_payments": conn.execute("SELECT COUNT(*) FROM payments_payment WHERE channel = 'LEGACY'").fetchone()[0],
            "credits": conn.execute("SELECT COUNT(*) FROM payments_credit").fetchone()[0],
        }
    common.drop_database(copy)
    return {"seconds": seconds, **rows}


def measure_naive(base: str, sample: int) -> dict:
    copy = f"{base}_naive"
    common.recreate_database(copy, template=base)
    env = {"DATABASE_URL": common.database_url(copy), "DJANGO_DEBUG": "true"}
    import os

    output = subprocess.run(
        [sys.executable, str(BENCH / "naive_backfill.py"), str(sample)],
        env=os.environ | env, capture_output=True, text=True, check=True,
    ).stdout
    common.drop_database(copy)
    result = json.loads(output.strip().splitlines()[-1])
    result["invoices_per_second"] = result["invoices"] / result["seconds"]
    return result


def measure_backfill(base: str, batch_size: int, shards: int) -> dict:
    if shards == 1:
        run = common.run_manage(base, "pay10_backfill", "--batch-size", str(batch_size))
        return {"seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb, "shards": 1, "output_tail": run.output[-600:]}
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=shards) as pool:
        runs = list(pool.map(
            lambda i: common.run_manage(base, "pay10_backfill", "--batch-size", str(batch_size), "--shard", f"{i}/{shards}"),
            range(1, shards + 1),
        ))
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": max(run.peak_rss_mb for run in runs),
        "shards": shards,
        "output_tail": runs[-1].output[-600:],
    }


# What the backfill inserts or updates, table by table (the floor writes the first three only).
WRITTEN = {
    "allocations": "SELECT COUNT(*) FROM payments_allocation",
    "synthetic_payments": "SELECT COUNT(*) FROM payments_payment WHERE channel = 'LEGACY'",
    "credits": "SELECT COUNT(*) FROM payments_credit",
    "audit_rows": "SELECT COUNT(*) FROM payments_paymentauditlog",
    "invoice_markers": "SELECT COUNT(*) FROM payments_invoicemigration",
    "payment_markers": "SELECT COUNT(*) FROM payments_paymentmigration",
    "payments_mapped": "SELECT COUNT(*) FROM payments_payment WHERE verification_status IS NOT NULL",
    "deviations": "SELECT COUNT(*) FROM payments_backfilldeviation",
    "invoice_status_changes": "SELECT COUNT(*) FROM payments_invoicemigration m JOIN billing_invoice i ON i.id = m.invoice_id "
    "WHERE i.status <> m.legacy_status",
}


def rows_written(base: str) -> dict:
    with common.psycopg.connect(common.database_url(base)) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in WRITTEN.items()}


def measure_verify(base: str) -> dict:
    run = common.run_manage(base, "pay10_verify", check=False)
    statements = _statements(BENCH / "verify_floor.sql")
    with common.psycopg.connect(common.database_url(base)) as conn:
        started = time.perf_counter()
        violations = [conn.execute(statement).fetchone()[0] for statement in statements]
        raw_seconds = time.perf_counter() - started
    return {
        "seconds": run.seconds,
        "exit_code_ok": "✗" not in run.output,
        "raw_sql_seconds": raw_seconds,
        "raw_sql_violations": violations,
        "output_tail": run.output[-800:],
    }


def measure(
    size: int, *, tenant: str, naive_sample: int, batch_size: int, shards: list[int], keep: bool, reads_repeat: int = 20
) -> dict:
    base, legacy = prepare_legacy(size, tenant)
    result: dict = {"size": size, "legacy": legacy}
    result["floor"] = measure_floor(base)
    result["naive"] = measure_naive(base, naive_sample)
    template = f"{base}_legacy"
    if len(shards) > 1:
        common.recreate_database(template, template=base)
    result["backfill"] = measure_backfill(base, batch_size, 1)
    result["backfill"]["rows_written"] = rows_written(base)
    result["verify"] = measure_verify(base)
    build = common.run_manage(base, "migrate", "--verbosity", "0")
    result["read_model_build"] = {"seconds": build.seconds, "peak_rss_mb": build.peak_rss_mb}
    # The backfill rewrote most invoice rows; autovacuum would settle the tables within minutes of it
    # on a live database. Measure the reads in that settled state, not in the minute after.
    with common.psycopg.connect(common.database_url(base), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        result["vacuum_seconds"] = time.perf_counter() - started
    result["reads"] = reads.measure(base, tenant=tenant, repeat=reads_repeat, deep_page=2000)
    result["reads_live"] = reads.measure(base, tenant=tenant, repeat=3, deep_page=2000, read_model=False)
    result["writes"] = writes.measure(base, tenant=tenant, operations=200)
    result["shards"] = {}
    for count in shards:
        if count == 1:
            result["shards"]["1"] = result["backfill"]["seconds"]
            continue
        copy = f"{base}_shard{count}"
        common.recreate_database(copy, template=template)
        result["shards"][str(count)] = measure_backfill(copy, batch_size, count)["seconds"]
        common.drop_database(copy)
    if len(shards) > 1:
        common.drop_database(template)
    if not keep:
        common.drop_database(base)
    result["database"] = base if keep else None
    floor = result["floor"]["seconds"]
    result["ratios"] = {
        "backfill_over_floor": result["backfill"]["seconds"] / floor,
        "naive_over_backfill": (size / result["naive"]["invoices_per_second"]) / result["backfill"]["seconds"],
        "verify_over_raw_sql": result["verify"]["seconds"] / result["verify"]["raw_sql_seconds"],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", required=True, help="a size, or several comma-separated (e.g. 100000,300000,1000000)")
    parser.add_argument("--tenant", default="rcme-dev")
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--shards", default="1", help="comma-separated worker counts to compare, e.g. 1,2")
    parser.add_argument("--keep", action="store_true", help="keep the backfilled database for bench/reads.py")
    args = parser.parse_args()
    shards = [int(value) for value in args.shards.split(",")]
    for size in (int(value) for value in args.invoices.split(",")):
        result = measure(
            size, tenant=args.tenant, naive_sample=args.naive_sample, batch_size=args.batch_size,
            shards=shards, keep=args.keep,
        )
        result["machine"] = common.machine()
        path = common.save_results(f"backfill-{size}", result)
        print(json.dumps({k: result[k] for k in ("size", "ratios")}, indent=2))
        print(f"written {path}")


if __name__ == "__main__":
    main()
