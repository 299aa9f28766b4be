#!/usr/bin/env python
"""`make demo`: the PAY-10 runbook end to end on the default database (a SQLite file).

From a clean demo database: legacy state -> legacy data for `rcme-dev` -> baseline (Step 4) ->
schema (Step 1) -> backfill (Step 5) -> remaining migrations -> verification (Step 6), then a
summary. Everything it writes goes to `demo-output/`. Re-runnable: the demo database is rebuilt
every time.
"""
import json
import os
import sys
from collections import Counter
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

DEMO_DB = ROOT / "db.sqlite3"
OUTPUT = ROOT / "demo-output"
TENANT = "rcme-dev"
INVOICES = 2000
SEED = 42


class Tee:
    """A command's stdout, shown on the terminal and kept in a file."""

    def __init__(self, path: Path):
        self.path = path
        self.buffer = StringIO()

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        self.buffer.write(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return False

    def save(self) -> None:
        self.path.write_text(self.buffer.getvalue(), encoding="utf-8")


def step(title: str) -> None:
    print(f"\n### {title}", flush=True)


def main() -> int:
    # The demo owns the default SQLite file: start from nothing each time.
    os.environ["DATABASE_URL"] = f"sqlite:///{DEMO_DB}"
    for path in (DEMO_DB, *(DEMO_DB.with_name(DEMO_DB.name + suffix) for suffix in ("-wal", "-shm"))):
        path.unlink(missing_ok=True)  # the database and its write-ahead log go together
    OUTPUT.mkdir(exist_ok=True)
    for old in OUTPUT.iterdir():
        if old.is_file():
            old.unlink()

    import django
    from django.core.management import call_command, get_commands
    from django.core.management.base import CommandError

    django.setup()
    commands = get_commands()

    def run(name: str, *args, log: str | None = None) -> bool:
        out = Tee(OUTPUT / log) if log else sys.stdout
        try:
            call_command(name, *args, stdout=out)
            return True
        except (CommandError, SystemExit) as error:
            print(f"{name} failed: {error}", flush=True)
            return False
        finally:
            if log:
                out.save()

    step("Legacy state: migrate payments 0001_initial (the database as the old service left it)")
    call_command("migrate", verbosity=0)
    call_command("migrate", "payments", "0001_initial", verbosity=0)

    step(f"Legacy data: pay10_seed_legacy --tenant {TENANT} --invoices {INVOICES} --seed {SEED}")
    run("pay10_seed_legacy", "--tenant", TENANT, "--invoices", str(INVOICES), "--seed", str(SEED))

    baseline = OUTPUT / "baseline.json"
    step("Step 4: baseline")
    if "pay10_baseline" in commands:
        run("pay10_baseline", "--out", str(baseline), "--tenant", TENANT, log="baseline.txt")
    else:
        print("pay10_baseline is not installed; skipping the baseline")

    step("Step 1: schema (migrate payments 0002_pay10_schema)")
    call_command("migrate", "payments", "0002_pay10_schema", verbosity=1)

    step("Step 5: backfill (pay10_backfill)")
    report = OUTPUT / "report.json"
    backfilled = run("pay10_backfill", "--report", str(report), log="backfill.txt")

    step("Remaining migrations (0003 finds nothing left to backfill)")
    call_command("migrate", verbosity=1)

    verified = None
    step("Step 6: verification")
    if "pay10_verify" in commands:
        args = ["--tenant", TENANT] + (["--baseline", str(baseline)] if baseline.exists() else [])
        verified = run("pay10_verify", *args, log="verify.txt")
    else:
        print("pay10_verify is not installed; skipping the verification")

    step("Summary")
    deviations = json.loads(report.read_text()) if report.exists() else []
    print(f"Demo database: {DEMO_DB}")
    print(f"Backfill: {'ok' if backfilled else 'FAILED'}; report: {report} ({len(deviations)} deviations)")
    for kind, count in sorted(Counter(entry["kind"] for entry in deviations).items()):
        print(f"  {kind}: {count}")
    print(f"Verification: {'skipped' if verified is None else 'ok' if verified else 'FAILED'}")
    print(f"Outputs in {OUTPUT}/")
    print("Next: `make serve` serves this database and prints an admin login (runbook Step 7).")
    return 0 if backfilled and verified is not False else 1


if __name__ == "__main__":
    sys.exit(main())
