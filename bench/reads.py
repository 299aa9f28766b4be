"""FIN-01 and FIN-02 latency on a backfilled data set (median of repeated requests).

    .venv/bin/python bench/reads.py --database pay10_bench_100000 [--repeat 20] [--deep-page 2000] [--live]

Use `bench/backfill.py --keep` first (or any migrated database); `bench/backfill.py` itself measures
the reads of each size (read model and live). Results: bench/results/reads-<db>[-live].json.
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


def measure(database: str, *, tenant: str, repeat: int, deep_page: int, read_model: bool = True) -> dict:
    """Median latencies; `read_model=False` is the baseline: the same requests computed live."""
    common.run_manage(database, "migrate", "--verbosity", "0")
    env = os.environ | {
        "DATABASE_URL": common.database_url(database),
        "DJANGO_DEBUG": "true",
        "PAY10_READ_MODEL": "true" if read_model else "false",
    }
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "reads_probe.py"), tenant, str(repeat), str(deep_page)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--tenant", default="rcme-dev")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--deep-page", type=int, default=2000)
    parser.add_argument("--live", action="store_true", help="compute live (PAY10_READ_MODEL=false): the baseline")
    args = parser.parse_args()
    result = measure(args.database, tenant=args.tenant, repeat=args.repeat, deep_page=args.deep_page, read_model=not args.live)
    name = f"reads-{args.database}{'-live' if args.live else ''}"
    path = common.save_results(name, {"database": args.database, "reads": result, "machine": common.machine()})
    print(json.dumps(result, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
