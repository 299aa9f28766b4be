import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_settings(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")} | env
    return subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, env=environment, capture_output=True, text=True,
    )


def test_secret_key_is_required_when_debug_is_off():
    # Named explicitly: the environment wins over the project's `.env`.
    result = _import_settings(DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_debug_runs_with_the_sqlite_default_and_no_secret():
    result = _import_settings(DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "True"


def test_database_url_selects_postgresql():
    result = _import_settings(DJANGO_DEBUG="true", DATABASE_URL="postgres://u@127.0.0.1:5432/x")
    assert result.stdout.split()[1] == "django.db.backends.postgresql"
