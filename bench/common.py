"""Shared plumbing of the benchmark scripts: databases, timing, peak memory, the machine.

Benchmarks run against PostgreSQL (`DATABASE_URL`, default the local server) in databases of their
own (`pay10_bench_*`), never the application's. Each script is plain Python: run it with the
project's virtualenv, e.g. `.venv/bin/python bench/backfill.py --sizes 100000`.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_SERVER_URL)


def database_url(name: str) -> str:
    parts = urlsplit(server_url())
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin_connection() -> psycopg.Connection:
    return psycopg.connect(database_url("postgres"), autocommit=True)


def recreate_database(name: str, *, template: str | None = None) -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    output: str


def run_manage(database: str, *args: str, check: bool = True) -> Measured:
    """Run `manage.py` in a child process; wall time and the child's own peak RSS (wait4)."""
    env = os.environ | {"DATABASE_URL": database_url(database), "DJANGO_DEBUG": "true"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output = process.stdout.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if check and process.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    return Measured(seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024, output=output)


def timed_sql(database: str, sql: str) -> float:
    with psycopg.connect(database_url(database)) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(sql)
        return time.perf_counter() - started


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def machine() -> dict:
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    with admin_connection() as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "postgresql": server_version,
        "shared_buffers": shared_buffers,
        "python": platform.python_version(),
    }


def save_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
