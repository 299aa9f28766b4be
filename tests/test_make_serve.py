"""`make serve` (bin/serve.py) as a newcomer uses it: it prints a login and a token that work against
the gunicorn it starts, keeps the same demo user across runs, and stops on Ctrl-C (SIGINT)."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from tests.live_http import ROOT, cookies, free_port, http_call, manage


def _development_environment(database: Path, port: int) -> dict:
    """What `make serve` passes: DJANGO_DEBUG=true and PORT, nothing else of the caller's DJANGO_*."""
    inherited = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL"))}
    return inherited | {"DJANGO_DEBUG": "true", "PORT": str(port), "DATABASE_URL": f"sqlite:///{database}"}


def _start(environment: dict, output: Path) -> tuple[subprocess.Popen, str, str]:
    """Run bin/serve.py until it prints its banner and answers; returns (process, password, token)."""
    with open(output, "w") as out:
        process = subprocess.Popen([sys.executable, "bin/serve.py"], cwd=ROOT, env=environment, stdout=out,
                                   stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "Ctrl-C stops" not in output.read_text():
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.2)
    banner = output.read_text()
    password = re.search(r"\(user demo, password (\S+)\)", banner).group(1)
    token = re.search(r"API token: (\S+)", banner).group(1)
    port = int(environment["PORT"])
    while True:
        try:
            if http_call(port, "GET", "/healthz")[0] == 200:
                return process, password, token
        except OSError:
            pass
        assert time.monotonic() < deadline, "gunicorn did not answer"
        time.sleep(0.2)


def _admin_login(port: int, password: str) -> bool:
    """Log in as `demo`; once in, the Finance dashboard and its stylesheet must load."""
    status, headers, body = http_call(port, "GET", "/admin/login/")
    csrf = cookies(headers)["csrftoken"].value
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    status, headers, _body = http_call(
        port, "POST", "/admin/login/",
        body=urlencode({"username": "demo", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}),
        headers={"Cookie": f"csrftoken={csrf}", "Content-Type": "application/x-www-form-urlencoded",
                 "Origin": f"http://127.0.0.1:{port}"},
    )
    if status != 302:
        return False
    session = cookies(headers)["sessionid"].value
    status, _headers, page = http_call(port, "GET", "/admin/billing/invoice/finance-dashboard/",
                                   headers={"Cookie": f"sessionid={session}"})
    assert status == 200
    assert b"Finance dashboard" in page
    stylesheet = re.search(rb'href="(/static/admin/css/base[^"]*\.css)"', page).group(1).decode()
    assert http_call(port, "GET", stylesheet)[0] == 200
    return True


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    return process.wait(timeout=30)


def test_make_serve_prints_a_login_and_a_token_that_work_and_stops_on_ctrl_c(tmp_path):
    database = tmp_path / "demo.sqlite3"
    port = free_port()
    environment = _development_environment(database, port)
    manage(environment, "migrate", "--verbosity", "0")
    manage(environment, "shell", "-c",
            "from billing.models import Tenant; Tenant.objects.create(id='rcme-dev', name='RCME', currency='EUR')")

    process, first_password, token = _start(environment, tmp_path / "first.out")
    try:
        assert _admin_login(port, first_password)
        status, _headers, body = http_call(port, "GET", "/api/billing/admin/finance/summary?period=ALL_TIME",
                                       headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert json.loads(body)["period"] == "ALL_TIME"
    finally:
        assert _stop(process) == 0

    process, second_password, _token = _start(environment, tmp_path / "second.out")
    try:
        assert second_password != first_password
        assert not _admin_login(port, first_password)  # each run sets a new password on the same user
        assert _admin_login(port, second_password)
    finally:
        assert _stop(process) == 0
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM auth_user WHERE username = 'demo' AND is_staff").fetchone() == (1,)


def test_make_serve_without_a_demo_database_says_to_run_make_demo(tmp_path):
    environment = _development_environment(tmp_path / "missing.sqlite3", free_port())
    result = subprocess.run([sys.executable, "bin/serve.py"], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "run `make demo` first" in result.stderr
    assert not (tmp_path / "missing.sqlite3").exists()
