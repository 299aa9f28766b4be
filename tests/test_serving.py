"""The service as production runs it: gunicorn with config/gunicorn.py (several workers), DEBUG off,
static files collected and served by whitenoise, behind a TLS-terminating proxy (requests carry
`X-Forwarded-Proto: https`), on a SQLite file. Everything goes through real HTTP to that process;
its database is set up with manage.py commands, its logs are read from its stdout and stderr.
"""
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.live_http import ROOT, cookies, free_port, http_call, manage
PUBLIC_HOST = "pay10.example.test"
PUBLIC_ORIGIN = f"https://{PUBLIC_HOST}"
ADMIN_PASSWORD = "served-admin-password-1"
WORKERS = 4
TENANT = "acme"


@dataclass
class Served:
    port: int
    database: Path
    stdout: Path
    stderr: Path
    staff_token: str

    def request(self, method: str, path: str, *, body: bytes | str | None = None, headers: dict | None = None,
                tls: bool = True) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request as the proxy forwards it: the public host name and, for TLS, X-Forwarded-Proto."""
        sent = {"Host": PUBLIC_HOST} | ({"X-Forwarded-Proto": "https"} if tls else {}) | (headers or {})
        return http_call(self.port, method, path, body=body, headers=sent)

    def api(self, method: str, path: str, payload: dict | None = None, **headers) -> tuple[int, dict, dict]:
        status, response_headers, body = self.request(
            method, path, body=json.dumps(payload) if payload is not None else None,
            headers={"Authorization": f"Bearer {self.staff_token}", "Content-Type": "application/json"} | headers,
        )
        try:
            document = json.loads(body) if body else {}
        except ValueError:
            document = {"not JSON": body.decode(errors="replace")[:200]}  # e.g. the HTML of a 500
        return status, dict(response_headers), document

    def log_lines(self, stream: Path) -> list[dict]:
        return [json.loads(line) for line in stream.read_text().splitlines() if line.startswith("{")]


def _production_environment(tmp: Path) -> dict:
    """Only what a deploy sets: no DJANGO_DEBUG, so the production defaults apply."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": "served-test-" + "k3y-0f-fifty-characters-or-more-for-check-deploy",
        "DJANGO_ALLOWED_HOSTS": f"{PUBLIC_HOST},127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp / 'served.sqlite3'}",
        "DJANGO_STATIC_ROOT": str(tmp / "static"),
        "DJANGO_LOG_FORMAT": "json",
        "WEB_CONCURRENCY": str(WORKERS),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    tmp = tmp_path_factory.mktemp("served")
    environment = _production_environment(tmp)
    manage(environment, "migrate", "--verbosity", "0")
    manage(environment, "collectstatic", "--no-input", "--verbosity", "0")
    manage(environment, "shell", "-c",
            f"from billing.models import Tenant; Tenant.objects.create(id={TENANT!r}, name='Acme', currency='KES')")
    manage(environment, "createsuperuser", "--no-input", "--username", "admin", "--email", "admin@example.test",
            DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD)
    staff_token = manage(environment, "create_api_token", "staff-api", "--staff").strip().splitlines()[-1]

    port = free_port()
    stdout, stderr = tmp / "gunicorn.out", tmp / "gunicorn.err"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, env=environment, stdout=out, stderr=err,
        )
    server = Served(port=port, database=tmp / "served.sqlite3", stdout=stdout, stderr=stderr, staff_token=staff_token)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"gunicorn exited: {stderr.read_text()}"
            try:
                if server.request("GET", "/healthz", tls=False)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer: {stderr.read_text()}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_probes_answer_over_plain_http_with_json(served):
    status, _headers, body = served.request("GET", "/healthz", tls=False)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _headers, body = served.request("GET", "/readyz", tls=False)
    ready = json.loads(body)
    assert status == 200, ready
    assert ready["status"] == "ready"
    assert ready["database"] == "ok"
    assert ready["staticFiles"] == "ok"
    assert ready["migrations"]["unapplied"] == []
    assert ready["readModel"] == "not_used"  # SQLite: the readers compute live


def test_plain_http_is_redirected_to_https(served):
    status, headers, _body = served.request("GET", "/admin/login/", tls=False)
    assert status == 301
    assert headers["Location"] == f"{PUBLIC_ORIGIN}/admin/login/"
    status, headers, _body = served.request("GET", "/admin/login/")
    assert status == 200
    assert "max-age=60" in headers["Strict-Transport-Security"]


def _log_in(served: Served, *, origin: str) -> tuple[int, http.client.HTTPMessage]:
    status, headers, body = served.request("GET", "/admin/login/?next=/admin/")
    assert status == 200
    csrf_cookie = cookies(headers)["csrftoken"]
    assert csrf_cookie["secure"], "the CSRF cookie must be Secure when DEBUG is off"
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urlencode({"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"})
    status, headers, _body = served.request(
        "POST", "/admin/login/?next=/admin/", body=form,
        headers={"Origin": origin, "Cookie": f"csrftoken={csrf_cookie.value}",
                 "Content-Type": "application/x-www-form-urlencoded"},
    )
    return status, headers


def test_admin_login_through_a_tls_proxy_succeeds_and_pages_are_styled(served):
    status, headers = _log_in(served, origin=PUBLIC_ORIGIN)
    assert status == 302, "the login was refused"
    assert headers["Location"] == "/admin/"
    session = cookies(headers)["sessionid"]
    assert session["secure"] and session["httponly"]

    status, _headers, page = served.request("GET", "/admin/", headers={"Cookie": f"sessionid={session.value}"})
    assert status == 200
    assert b"Finance dashboard" in page
    stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "the admin links its CSS by the hashed name collectstatic wrote"
    status, headers, css = served.request("GET", stylesheet.group(1).decode())
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]
    assert b"body" in css


def test_admin_login_from_a_foreign_origin_is_refused(served):
    status, _headers = _log_in(served, origin="https://elsewhere.example.test")
    assert status == 403


def _record(served: Served, reference: str, idempotency_key: str | None = None) -> tuple[int, dict]:
    payload = {"tenant": TENANT, "amountCents": 1_000, "currency": "KES", "channel": "BANK_TRANSFER",
               "reference": reference, "verificationStatus": "VERIFIED"}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    status, _headers, body = served.api("POST", "/api/payments", payload, **headers)
    return status, body


def test_concurrent_payments_on_sqlite_wait_for_each_other_and_are_recorded_once(served):
    distinct = [(f"concurrent-{number}", None) for number in range(24)]
    replays = [("replayed", "same-key")] * 8  # one payment, asked for eight times at once
    jobs = distinct + replays
    start = threading.Barrier(len(jobs))  # every request leaves at the same moment

    def send(job):
        start.wait(timeout=30)
        return job, _record(served, *job)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(send, jobs))

    statuses = Counter(status for _job, (status, _body) in results)
    assert set(statuses) <= {200, 201}, f"statuses {dict(statuses)}: {[b for _j, (s, b) in results if s >= 300][:3]}"
    assert statuses[201] == len(distinct) + 1
    replay_ids = {body["id"] for (reference, _key), (_status, body) in results if reference == "replayed"}
    assert len(replay_ids) == 1

    with sqlite3.connect(served.database) as database:
        rows = database.execute(
            "SELECT reference, COUNT(*) FROM payments_payment WHERE tenant_id = ? AND (reference LIKE 'concurrent-%' "
            "OR reference = 'replayed') GROUP BY reference", (TENANT,),
        ).fetchall()
        audited = database.execute(
            "SELECT COUNT(DISTINCT payment_id) FROM payments_paymentauditlog WHERE payment_id IN "
            "(SELECT id FROM payments_payment WHERE reference LIKE 'concurrent-%' OR reference = 'replayed')"
        ).fetchone()[0]
    assert dict(rows) == {reference: 1 for reference, _key in distinct} | {"replayed": 1}
    assert audited == len(distinct) + 1


def test_each_request_and_each_refused_payment_operation_log_one_json_line(served):
    status, headers, _body = served.api("POST", "/api/payments", {
        "tenant": TENANT, "amountCents": 500, "currency": "KES", "channel": "CASH", "reference": "logged",
    }, **{"X-Request-ID": "served-log-ok"})
    assert status == 201
    status, _headers, _body = served.api("POST", "/api/payments", {
        "tenant": TENANT, "amountCents": 500, "currency": "USD", "channel": "CASH",
    }, **{"X-Request-ID": "served-log-refused"})
    assert status == 400

    deadline = time.monotonic() + 10
    while True:
        lines = served.log_lines(served.stderr)
        requests = {line["request_id"]: line for line in lines if line["logger"] == "pay10.request"}
        if "served-log-refused" in requests or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    recorded = requests["served-log-ok"]
    assert recorded["level"] == "INFO"
    assert (recorded["method"], recorded["path"], recorded["status"]) == ("POST", "/api/payments", 201)
    assert (recorded["user"], recorded["tenant"]) == ("staff-api", TENANT)
    assert recorded["duration_ms"] > 0
    assert recorded["time"]

    refusals = [line for line in lines if line["logger"] == "pay10.payments.refused"
                and line.get("request_id") == "served-log-refused"]
    assert len(refusals) == 1
    assert refusals[0]["status"] == 400
    assert refusals[0]["operation"] == "payment-record"
    assert "currency" in refusals[0]["detail"]
    assert requests["served-log-refused"]["status"] == 400
    assert not any(line["logger"] == "pay10.payments.refused" and line.get("request_id") == "served-log-ok"
                   for line in lines)

    access = [line for line in served.log_lines(served.stdout) if line.get("request_id") == "served-log-ok"]
    assert len(access) == 1
    assert (access[0]["logger"], access[0]["status"], access[0]["path"]) == ("gunicorn.access", 201, "/api/payments")
