"""What the FIN-01/FIN-02 read model costs the writers: a payment operation (record a verified
payment, allocate it to an unpaid invoice: two services, two commits) with the commit-time upkeep of
the read model and of FIN-01's tenant balances, against the same operation with both switched off
(their triggers disabled), median of `--operations` each, on a backfilled data set.

    .venv/bin/python bench/writes.py --database pay10_bench_100000 [--operations 200]

`bench/backfill.py` runs it for every size. Afterwards the figures of the invoices paid without the
upkeep, and the balances of the payments recorded meanwhile, are refreshed, so both stay exact.
Results: bench/results/writes-<db>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

UPKEEP_TRIGGERS = """
SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE (t.tgname LIKE 'pay10_figures_%' OR t.tgname LIKE 'pay10_balances_%') AND NOT t.tgisinternal"""


def _probe(database: str, tenant: str, operations: int) -> dict:
    env = os.environ | {"DATABASE_URL": common.database_url(database), "DJANGO_DEBUG": "true"}
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "writes_probe.py"), tenant, str(operations)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(database: str, *, tenant: str, operations: int) -> dict:
    common.run_manage(database, "migrate", "--verbosity", "0")
    with common.psycopg.connect(common.database_url(database), autocommit=True) as conn:
        triggers = conn.execute(UPKEEP_TRIGGERS).fetchall()
        high_water = conn.execute("SELECT coalesce(max(id), 0) FROM payments_allocation").fetchone()[0]
        payments_high_water = conn.execute("SELECT coalesce(max(id), 0) FROM payments_payment").fetchone()[0]
        for name, table in triggers:
            conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER "{name}"')
        try:
            without = _probe(database, tenant, operations)
        finally:
            for name, table in triggers:
                conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER "{name}"')
            # Whatever was paid without the upkeep (every invoice changed since the probe started).
            conn.execute(
                "SELECT pay10_figures_refresh(ARRAY(SELECT invoice_id FROM payments_allocation "
                "WHERE id > %s))", [high_water],
            )
            # The payments recorded without the balances' upkeep (they record and allocate no credit).
            conn.execute(
                "SELECT pay10_balances_refresh(ARRAY(SELECT id FROM payments_payment WHERE id > %s), '{}')",
                [payments_high_water],
            )
    with_upkeep = _probe(database, tenant, operations)
    return {
        "operations": operations,
        "with_upkeep_ms": with_upkeep["median_ms"],
        "without_upkeep_ms": without["median_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--tenant", default="rcme-dev")
    parser.add_argument("--operations", type=int, default=200)
    args = parser.parse_args()
    result = measure(args.database, tenant=args.tenant, operations=args.operations)
    path = common.save_results(f"writes-{args.database}", {"database": args.database, "writes": result, "machine": common.machine()})
    print(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
