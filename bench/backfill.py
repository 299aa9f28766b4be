"""Backfill and verify at scale, side by side with their floors and the naive loop.

    .venv/bin/python bench/backfill.py --invoices 100000 [--naive-sample 2000] [--batch-size 5000]

    .venv/bin/python bench/backfill.py --invoices 100000,300000,1000000 --shards 1,2   # the whole bench

For each size, in one run, on fresh PostgreSQL databases (named `<prefix>_<size>*`):
1. legacy data from `pay10_seed_legacy` (`--seed-options` appended to it), then the PAY-10 schema
   (`migrate payments 0002_pay10_schema`); a copy of that state is kept as the template of the rest;
2. the same-rows floor: bench/same_rows_floor.sql (every row the backfill writes, set-based, one
   transaction, foreign keys on, the guard triggers disabled on that copy only) on a copy;
3. the bare floor: bench/floor.sql (payments, allocations, credits only) on a copy;
4. the naive Django loop (bench/naive_backfill.py) on another copy, over a sample;
5. `pay10_backfill` (wall time and the process's peak RSS); the rows it wrote, counted the same way
   as each floor's;
6. `pay10_verify` against bench/verify_floor.sql, the raw SQL of its checks;
7. the rest of the runbook's `migrate` (0004/0005 build the FIN-01/FIN-02 read model: timed), then
   FIN-01/FIN-02 latency from the read model and, as the baseline, computed live (bench/reads.py);
8. what the read model's upkeep costs a payment operation, against the same operation without it
   (bench/writes.py);
9. `pay10_backfill` as K shards at once on a copy, for each K of `--shards`;
10. `pay10_backfill` on a copy while bench/legacy_traffic.py writes to the legacy tables as the live
    application does (`--traffic-rate` rows/s, 0 to skip): time per invoice.
Results are written to bench/results/backfill-<size>.json, each with the run's id (its start time)
so bench/report.py renders the sizes of one run together.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import legacy_traffic  # noqa: E402
import reads  # noqa: E402
import writes  # noqa: E402

BENCH = Path(__file__).resolve().parent


def _statements(path: Path) -> list[str]:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def prepare_legacy(size: int, tenant: str, *, prefix: str = "pay10_bench", seed_options: str = "") -> tuple[str, dict]:
    base = f"{prefix}_{size}"
    common.recreate_database(base)
    common.run_manage(base, "migrate", "payments", "0001_initial", "--verbosity", "0")
    seeded = common.run_manage(
        base, "pay10_seed_legacy", "--tenant", tenant, "--invoices", str(size), "--seed", "1", *shlex.split(seed_options)
    )
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
    return base, {"seed_seconds": seeded.seconds, "seed_options": seed_options, **counts}


def disable_user_triggers(database: str) -> list[str]:
    """`ALTER TABLE ... DISABLE TRIGGER USER` on every table with a trigger of its own (the guard's
    touch triggers, append-only, keep-history): on a floor's copy only. Foreign keys are system
    triggers and stay on. Returns the triggers disabled."""
    with common.psycopg.connect(common.database_url(database), autocommit=True) as conn:
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"
        ).fetchall()
        for table in sorted({table for table, _name in triggers}):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    return [f"{table}.{name}" for table, name in triggers]


def measure_floor(template: str, *, script: str = "floor.sql", suffix: str = "floor", triggers: bool = True) -> dict:
    """A floor's SQL file in one timed transaction on a copy of the legacy template; the rows it wrote,
    counted as the backfill's are (`WRITTEN`). `triggers=False` disables the user triggers first."""
    copy = f"{template}_{suffix}"
    common.recreate_database(copy, template=template)
    disabled = [] if triggers else disable_user_triggers(copy)
    sql = (BENCH / script).read_text()
    load = os.getloadavg()
    seconds = common.timed_sql(copy, sql)
    written = rows_written(copy)
    common.drop_database(copy)
    return {
        "script": script, "seconds": seconds, "rows_written": written, "rows_total": sum(written.values()),
        "triggers_disabled": disabled, "load_average_before": load,
        # the bare floor's three tables, as earlier results named them
        "allocations": written["allocations"], "synthetic_payments": written["synthetic_payments"],
        "credits": written["credits"],
    }


def measure_naive(template: str, sample: int) -> dict:
    copy = f"{template}_naive"
    common.recreate_database(copy, template=template)
    env = {"DATABASE_URL": common.database_url(copy), "DJANGO_DEBUG": "true"}
    output = subprocess.run(
        [sys.executable, str(BENCH / "naive_backfill.py"), str(sample)],
        env=os.environ | env, capture_output=True, text=True, check=True,
    ).stdout
    common.drop_database(copy)
    result = json.loads(output.strip().splitlines()[-1])
    result["invoices_per_second"] = result["invoices"] / result["seconds"]
    return result


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class WhereTimeGoes:
    """While a backfill runs: the machine's CPU busy share over the run, and twice a second what the
    database's active backends are doing (`pg_stat_activity`: on CPU, or waiting on which lock or I/O),
    counted as samples. Tells a CPU-bound run from one that waits."""

    def __init__(self, database: str, interval: float = 0.5) -> None:
        self.database, self.interval = database, interval
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "WhereTimeGoes":
        self._cpu = _cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        busy, total = _cpu_times()
        self.cpu_busy = (busy - self._cpu[0]) / max(total - self._cpu[1], 1)

    def _sample(self) -> None:
        with common.psycopg.connect(common.database_url("postgres"), autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                for kind, event, count in conn.execute(
                    "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid() GROUP BY 1, 2",
                    [self.database],
                ):
                    self.samples[f"{kind}:{event}" if event else kind] += count

    def result(self) -> dict:
        return {"cpu_busy_share": self.cpu_busy, "backend_samples": dict(self.samples.most_common()),
                "sample_interval_s": self.interval}


def measure_backfill(base: str, batch_size: int, shards: int) -> dict:
    load = os.getloadavg()
    if shards == 1:
        with WhereTimeGoes(base) as where:
            run = common.run_manage(base, "pay10_backfill", "--batch-size", str(batch_size))
        return {"seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb, "shards": 1, "output_tail": run.output[-600:],
                "load_average_before": load, "where_time_goes": where.result()}
    started = time.perf_counter()
    with WhereTimeGoes(base) as where, ThreadPoolExecutor(max_workers=shards) as pool:
        runs = list(pool.map(
            lambda i: common.run_manage(base, "pay10_backfill", "--batch-size", str(batch_size), "--shard", f"{i}/{shards}"),
            range(1, shards + 1),
        ))
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": max(run.peak_rss_mb for run in runs),
        "shards": shards,
        "output_tail": runs[-1].output[-600:],
        "load_average_before": load,
        "where_time_goes": where.result(),
        "shard_seconds": [run.seconds for run in runs],
    }


def measure_under_traffic(template: str, batch_size: int, *, tenant: str, rate: float) -> dict:
    """`pay10_backfill` on a copy while bench/legacy_traffic.py writes to the legacy tables."""
    copy = f"{template}_traffic"
    common.recreate_database(copy, template=template)
    traffic = legacy_traffic.LegacyTraffic(copy, tenant, rows_per_second=rate)
    traffic.start()
    time.sleep(1.0)
    run = measure_backfill(copy, batch_size, 1)
    probe = traffic.stop()
    with common.psycopg.connect(common.database_url(copy)) as conn:
        migrated = conn.execute("SELECT COUNT(*) FROM payments_invoicemigration").fetchone()[0]
        invoices = conn.execute("SELECT COUNT(*) FROM billing_invoice").fetchone()[0]
    common.drop_database(copy)
    return {
        "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"], "load_average_before": run["load_average_before"],
        "invoices_migrated": migrated, "invoices_at_end": invoices,
        "microseconds_per_invoice": run["seconds"] / migrated * 1e6 if migrated else None,
        "traffic": probe, "output_tail": run["output_tail"],
    }


# What the backfill inserts or updates, table by table, counted the same way on each floor's copy
# (the bare floor writes the first three only).
WRITTEN = {
    "allocations": "SELECT COUNT(*) FROM payments_allocation",
    "synthetic_payments": "SELECT COUNT(*) FROM payments_payment WHERE channel = 'LEGACY'",
    "credits": "SELECT COUNT(*) FROM payments_credit",
    "audit_rows": "SELECT COUNT(*) FROM payments_paymentauditlog",
    "invoice_markers": "SELECT COUNT(*) FROM payments_invoicemigration",
    "payment_markers": "SELECT COUNT(*) FROM payments_paymentmigration",
    # legacy payments given a channel and a verification status (synthetic ones are counted above)
    "payments_mapped": "SELECT COUNT(*) FROM payments_payment WHERE verification_status IS NOT NULL AND channel <> 'LEGACY'",
    "deviations": "SELECT COUNT(*) FROM payments_backfilldeviation",
    "invoice_status_changes": "SELECT COUNT(*) FROM payments_invoicemigration m JOIN billing_invoice i ON i.id = m.invoice_id "
    "WHERE i.status <> m.legacy_status",
}


def rows_written(base: str) -> dict:
    with common.psycopg.connect(common.database_url(base)) as conn:
        return {name: conn.execute(sql).fetchone()[0] for name, sql in WRITTEN.items()}


def migration_seconds(output: str) -> dict[str, float]:
    """Each migration's own time, from `migrate --verbosity 2` ("Applying app.name... OK (1.234s)")."""
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(r"Applying (\S+)\.\.\. OK \(([0-9.]+)s\)", output)
    }


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


def _same_rows_check(backfill: dict, floor: dict) -> dict:
    """Where the same-rows floor's row counts differ from the backfill's, table by table."""
    return {name: {"backfill": count, "floor": floor.get(name)} for name, count in backfill.items() if floor.get(name) != count}


def measure(
    size: int, *, tenant: str, naive_sample: int, batch_size: int, shards: list[int], keep: bool, reads_repeat: int = 20,
    prefix: str = "pay10_bench", seed_options: str = "", traffic_rate: float = 80.0, keep_backfilled: bool = False,
) -> dict:
    base, legacy = prepare_legacy(size, tenant, prefix=prefix, seed_options=seed_options)
    result: dict = {"size": size, "legacy": legacy}
    template = f"{base}_legacy"
    common.recreate_database(template, template=base)
    result["same_rows_floor"] = measure_floor(template, script="same_rows_floor.sql", suffix="same_rows", triggers=False)
    result["floor"] = measure_floor(template)
    result["naive"] = measure_naive(template, naive_sample)
    result["backfill"] = measure_backfill(base, batch_size, 1)
    result["backfill"]["rows_written"] = rows_written(base)
    result["backfill"]["rows_total"] = sum(result["backfill"]["rows_written"].values())
    result["same_rows_difference"] = _same_rows_check(
        result["backfill"]["rows_written"], result["same_rows_floor"]["rows_written"]
    )
    result["verify"] = measure_verify(base)
    if keep_backfilled:
        common.recreate_database(f"{base}_backfilled", template=base)
    build = common.run_manage(base, "migrate", "--verbosity", "2")
    result["read_model_build"] = {
        "seconds": build.seconds, "peak_rss_mb": build.peak_rss_mb, "migrations": migration_seconds(build.output),
    }
    # The backfill rewrote most invoice rows; autovacuum would settle the tables within minutes of it
    # on a live database. Measure the reads in that settled state, not in the minute after.
    with common.psycopg.connect(common.database_url(base), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        result["vacuum_seconds"] = time.perf_counter() - started
    result["reads"] = reads.measure(base, tenant=tenant, repeat=reads_repeat, deep_page=2000)
    result["reads_live"] = reads.measure(base, tenant=tenant, repeat=3, deep_page=2000, read_model=False)
    result["writes"] = writes.measure(base, tenant=tenant, operations=200)
    if not keep:
        common.drop_database(base)
    result["shards"] = {}
    result["shard_runs"] = {}
    for count in shards:
        if count == 1:
            result["shards"]["1"] = result["backfill"]["seconds"]
            continue
        copy = f"{template}_shard{count}"
        common.recreate_database(copy, template=template)
        run = measure_backfill(copy, batch_size, count)
        result["shards"][str(count)] = run["seconds"]
        result["shard_runs"][str(count)] = {
            k: run[k] for k in ("seconds", "peak_rss_mb", "load_average_before", "where_time_goes", "shard_seconds")
        }
        common.drop_database(copy)
    if traffic_rate > 0:
        result["under_traffic"] = measure_under_traffic(template, batch_size, tenant=tenant, rate=traffic_rate)
    common.drop_database(template)
    result["database"] = base if keep else None
    backfill = result["backfill"]["seconds"]
    naive_seconds = size / result["naive"]["invoices_per_second"]
    result["ratios"] = {
        "backfill_over_same_rows_floor": backfill / result["same_rows_floor"]["seconds"],
        "backfill_over_floor": backfill / result["floor"]["seconds"],
        "naive_over_backfill": naive_seconds / backfill,
        "verify_over_raw_sql": result["verify"]["seconds"] / result["verify"]["raw_sql_seconds"],
    }
    if "2" in result["shards"]:
        result["ratios"]["k2_speedup"] = result["shards"]["1"] / result["shards"]["2"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", required=True, help="a size, or several comma-separated (e.g. 100000,300000,1000000)")
    parser.add_argument("--tenant", default="rcme-dev")
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--shards", default="1", help="comma-separated worker counts to compare, e.g. 1,2")
    parser.add_argument("--keep", action="store_true", help="keep the backfilled database for bench/reads.py")
    parser.add_argument("--keep-backfilled", action="store_true",
                        help="keep a copy taken before the final migrate, after pay10_backfill and pay10_verify "
                        "(<prefix>_<size>_backfilled), for bench/build.py")
    parser.add_argument("--prefix", default="pay10_bench", help="database name prefix (default pay10_bench)")
    parser.add_argument("--seed-options", default="", help='more options for pay10_seed_legacy, e.g. "--many-credits"')
    parser.add_argument("--traffic-rate", type=float, default=80.0,
                        help="rows/s the legacy traffic writes during the backfill under traffic (0: skip that run)")
    args = parser.parse_args()
    shards = [int(value) for value in args.shards.split(",")]
    run_id = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for size in (int(value) for value in args.invoices.split(",")):
        started = time.perf_counter()
        load = os.getloadavg()
        result = measure(
            size, tenant=args.tenant, naive_sample=args.naive_sample, batch_size=args.batch_size,
            shards=shards, keep=args.keep, prefix=args.prefix, seed_options=args.seed_options,
            traffic_rate=args.traffic_rate, keep_backfilled=args.keep_backfilled,
        )
        result["run"] = run_id
        result["sizes_in_run"] = args.invoices
        result["bench_seconds"] = time.perf_counter() - started
        result["load_average_before"] = load
        result["load_average_after"] = os.getloadavg()
        result["machine"] = common.machine()
        path = common.save_results(f"backfill-{size}", result)
        print(json.dumps({k: result.get(k) for k in ("size", "ratios", "same_rows_difference", "bench_seconds")}, indent=2))
        print(f"written {path}")


if __name__ == "__main__":
    main()
