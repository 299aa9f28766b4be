"""`migrate` from the legacy state to head on a live database (issue 11).

A legacy database (`migrate payments 0001_initial`, then `pay10_seed_legacy`) is copied for each run;
while `manage.py migrate` takes it to head (0002 schema, 0003 backfill, 0004-0006 read model and
database code), probes act as the old application every 25 ms, each on its own connection:
read an invoice, update an invoice, read a payment, update a payment (legacy columns only). Each
probe's longest stall (the latency of one probe statement) is reported per step, a step being one
migration (from the end of the previous one to its own end, as `migrate` prints them).

Run 1 (plain): targets no stall over 1 s in any step, no probe failure.
Run 2 (report): a report transaction reads payments_payment and stays open 20 s as `migrate`
starts (an ordinary finance export): target no stall over 5 s, no probe failure.

Usage: .venv/bin/python bench/online_migrate.py --invoices 20000 [--runs plain,report] [--keep]
Databases: pay10_bench_online_<size>[_legacy]. Results: bench/results/online_migrate-<size>.json.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PROBE_INTERVAL = 0.025
REPORT_SECONDS = 20.0

PROBES = {
    "read_invoice": "SELECT id, status, amount_paid_cents FROM billing_invoice WHERE id = %s",
    "write_invoice": "UPDATE billing_invoice SET updated_at = updated_at WHERE id = %s",
    "read_payment": "SELECT id, status, amount_cents FROM payments_payment WHERE id = %s",
    "write_payment": "UPDATE payments_payment SET reference = reference WHERE id = %s",
}


def prepare_legacy(size: int, tenant: str) -> tuple[str, dict]:
    template = f"pay10_bench_online_{size}_legacy"
    common.recreate_database(template)
    common.run_manage(template, "migrate", "payments", "0001_initial", "--verbosity", "0")
    seeded = common.run_manage(template, "pay10_seed_legacy", "--tenant", tenant, "--invoices", str(size), "--seed", "1")
    with common.psycopg.connect(common.database_url(template), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        counts = {
            "invoices": conn.execute("SELECT count(*) FROM billing_invoice").fetchone()[0],
            "legacy_payments": conn.execute("SELECT count(*) FROM payments_payment").fetchone()[0],
        }
    return template, {"seed_seconds": seeded.seconds, **counts}


class Probe(threading.Thread):
    def __init__(self, name: str, sql: str, database: str, upper: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.probe, self.sql, self.database, self.upper, self.stop = name, sql, database, upper, stop
        self.samples: list[tuple[float, float]] = []  # (started, seconds)
        self.failures: list[tuple[float, str]] = []

    def run(self) -> None:
        rng = random.Random(self.probe)
        with common.psycopg.connect(common.database_url(self.database), autocommit=True) as conn:
            conn.execute("SET statement_timeout = '120s'")
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute(self.sql, [rng.randint(1, self.upper)]).fetchall() if self.sql.startswith("SELECT") \
                        else conn.execute(self.sql, [rng.randint(1, self.upper)])
                except Exception as error:  # a failed probe is a finding, not a crash of the bench
                    self.failures.append((started, f"{type(error).__name__}: {error}".splitlines()[0]))
                elapsed = time.monotonic() - started
                self.samples.append((started, elapsed))
                time.sleep(max(0.0, PROBE_INTERVAL - elapsed))


def hold_report(database: str, ready: threading.Event, seconds: float, result: dict) -> None:
    with common.psycopg.connect(common.database_url(database)) as conn:
        started = time.monotonic()
        result["rows"] = conn.execute("SELECT count(*), sum(amount_cents) FROM payments_payment").fetchone()[0]
        ready.set()
        time.sleep(seconds)
        conn.rollback()
        result["held_seconds"] = time.monotonic() - started


def run_migrate(database: str, log: list[tuple[float, str]], env: dict) -> int:
    """`manage.py migrate`; each migration's end time, as its ' OK' arrives."""
    process = subprocess.Popen(
        [sys.executable, "-u", str(common.ROOT / "manage.py"), "migrate", "--verbosity", "1"],
        cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ | {"DATABASE_URL": common.database_url(database), "DJANGO_DEBUG": "true"} | env,
    )
    for line in process.stdout:
        log.append((time.monotonic(), line.rstrip()))
    return process.wait()


def measure(template: str, run: str, size: int, *, keep: bool = False) -> dict:
    database = f"pay10_bench_online_{size}"
    common.recreate_database(database, template=template)
    with common.psycopg.connect(common.database_url(database)) as conn:
        upper_invoice = conn.execute("SELECT max(id) FROM billing_invoice").fetchone()[0]
        upper_payment = conn.execute("SELECT max(id) FROM payments_payment").fetchone()[0]
    stop = threading.Event()
    probes = [
        Probe(name, sql, database, upper_invoice if "invoice" in name else upper_payment, stop)
        for name, sql in PROBES.items()
    ]
    for probe in probes:
        probe.start()
    time.sleep(1.0)  # probes warm
    report: dict = {}
    holder = None
    if run == "report":
        ready = threading.Event()
        holder = threading.Thread(target=hold_report, args=(database, ready, REPORT_SECONDS, report), daemon=True)
        holder.start()
        ready.wait(60)
    log: list[tuple[float, str]] = []
    started = time.monotonic()
    load_before = os.getloadavg()
    code = run_migrate(database, log, {})
    finished = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for probe in probes:
        probe.join()
    if holder:
        holder.join()

    steps: list[dict] = []
    previous = started
    for at, line in log:
        if line.strip().startswith("Applying ") and line.endswith("OK"):
            steps.append({"step": line.strip()[len("Applying "):-len("... OK")], "start": previous, "end": at})
            previous = at
    for step in steps:
        step["seconds"] = step["end"] - step["start"]
        step["longest_stall_ms"] = {
            probe.probe: round(1000 * max((s for t, s in probe.samples if step["start"] <= t < step["end"]), default=0.0), 1)
            for probe in probes
        }
        step["probes"] = sum(1 for probe in probes for t, _s in probe.samples if step["start"] <= t < step["end"])
    longest = max((ms for step in steps for ms in step["longest_stall_ms"].values()), default=0.0)
    failures = [f"{probe.probe}: {message}" for probe in probes for _t, message in probe.failures]
    if not keep:
        common.drop_database(database)
    return {
        "run": run,
        "migrate_exit_code": code,
        "migrate_seconds": finished - started,
        "migrate_output_tail": "\n".join(line for _t, line in log[-15:]),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "report": report or None,
        "probe_count": sum(len(probe.samples) for probe in probes),
        "probe_failures": failures[:20],
        "probe_failure_count": len(failures),
        "longest_stall_ms": longest,
        "target_ms": 5000 if run == "report" else 1000,
        "met": code == 0 and not failures and longest <= (5000 if run == "report" else 1000),
        "steps": [{k: v for k, v in step.items() if k not in ("start", "end")} for step in steps],
    }


def table(result: dict) -> str:
    names = list(PROBES)
    lines = [f"| step | seconds | {' | '.join(names)} |", "|---|---:|" + "---:|" * len(names)]
    for step in result["steps"]:
        lines.append(
            f"| {step['step']} | {step['seconds']:.1f} | "
            + " | ".join(f"{step['longest_stall_ms'][n]:.0f}" for n in names) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, required=True)
    parser.add_argument("--tenant", default="rcme-dev")
    parser.add_argument("--runs", default="plain,report")
    parser.add_argument("--keep", action="store_true",
                        help="keep the legacy template and the last run's migrated database (bench/verify_statistics.py)")
    args = parser.parse_args()
    template, legacy = prepare_legacy(args.invoices, args.tenant)
    results = {"size": args.invoices, "legacy": legacy, "machine": common.machine(), "runs": []}
    runs = args.runs.split(",")
    for number, run in enumerate(runs, 1):
        result = measure(template, run, args.invoices, keep=args.keep and number == len(runs))
        results["runs"].append(result)
        sys.stdout.write(
            f"\n== {run}: migrate {result['migrate_seconds']:.1f} s (exit {result['migrate_exit_code']}), "
            f"{result['probe_count']} probes, {result['probe_failure_count']} failed, longest stall "
            f"{result['longest_stall_ms']:.0f} ms (target {result['target_ms']} ms): "
            f"{'met' if result['met'] else 'MISSED'}\n{table(result)}\n"
        )
    if not args.keep:
        common.drop_database(template)
    path = common.save_results(f"online_migrate-{args.invoices}", results)
    sys.stdout.write(f"\nresults: {path}\n")


if __name__ == "__main__":
    main()
