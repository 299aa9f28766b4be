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
    # Named explicitly: DEBUG off is also the default.
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


DEPLOY_SECRET_KEY = "check-deploy-" + "a-secret-key-of-fifty-characters-or-more-0123456789"


def test_check_deploy_is_clean_with_only_the_secret_key_and_allowed_hosts():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], "DJANGO_SECRET_KEY": DEPLOY_SECRET_KEY, "DJANGO_ALLOWED_HOSTS": "pay10.example.com"},
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_dot_env_in_the_checkout_does_not_turn_debug_on(tmp_path):
    """What `make install` used to write: a deploy or a cron job started in this checkout must not
    inherit it. Only DJANGO_READ_DOT_ENV_FILE=true makes the settings read `.env`."""
    dot_env = ROOT / ".env"
    kept = dot_env.read_bytes() if dot_env.exists() else None
    dot_env.write_text("DJANGO_DEBUG=true\n")
    try:
        ignored = _import_settings()
        read = _import_settings(DJANGO_READ_DOT_ENV_FILE="true")
    finally:
        if kept is None:
            dot_env.unlink()
        else:
            dot_env.write_bytes(kept)
    assert ignored.returncode != 0
    assert "DJANGO_SECRET_KEY" in ignored.stderr
    assert read.returncode == 0, read.stderr
    assert read.stdout.split()[0] == "True"

