"""/healthz and /readyz: no token, JSON, 503 when the service must not take traffic."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_a_token_or_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["migrations"] == {"unapplied": [], "onlineMigrationWindow": False}
    assert body["readModel"] == ("ready" if connection.vendor == "postgresql" else "not_used")


def _forget_applied(*names: tuple[str, str]) -> None:
    """As if these migrations had not run yet (the test's transaction restores the records)."""
    for app, name in names:
        MigrationRecorder.Migration.objects.filter(app=app, name=name).delete()


def test_readyz_is_unready_while_a_migration_is_unapplied(client):
    _forget_applied(("billing", "0001_initial"))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert "billing.0001_initial" in body["migrations"]["unapplied"]


def test_readyz_stays_ready_during_the_runbooks_online_backfill(client):
    """After 0002_pay10_schema the new code serves while the backfill and the read-model build run."""
    later = [name for app, name in MigrationRecorder.Migration.objects.values_list("app", "name")
             if app == "payments" and name >= "0003"]
    _forget_applied(*[("payments", name) for name in later])
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["migrations"]["onlineMigrationWindow"] is True
    assert "payments.0003_pay10_backfill" in body["migrations"]["unapplied"]


def test_readyz_is_unready_when_the_database_does_not_answer():
    script = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(r.status_code, r.content.decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true",
             "DATABASE_URL": "postgres://nobody@127.0.0.1:1/nothing"},
    )
    assert result.stdout.startswith("503 "), result.stderr
    assert '"database": "unreachable"' in result.stdout
