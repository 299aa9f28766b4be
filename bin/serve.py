#!/usr/bin/env python
"""`make serve`: the demo database (or DATABASE_URL) served by gunicorn, with a login to use it.

Creates or reuses the staff user `demo` (a superuser) with a new random password, issues an API token
(`create_api_token`), prints the admin URL, the login and the token, then runs gunicorn with the
project's config on 127.0.0.1:$PORT (default 8000) until Ctrl-C. `make` runs it with development
settings (DJANGO_DEBUG=true: the admin's static files come straight from the apps).
"""
import os
import secrets
import sys
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

USERNAME = "demo"
HOST = "127.0.0.1"


def main() -> int:
    import django
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    django.setup()
    port = os.environ.get("PORT", "8000")
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and not Path(database["NAME"]).exists():
        sys.stderr.write(f"no database at {database['NAME']}: run `make demo` first (or set DATABASE_URL)\n")
        return 1
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.stderr.write("the database has unapplied migrations: run `make demo` (or `manage.py migrate`) first\n")
        return 1

    password = secrets.token_urlsafe(12)
    user, _created = get_user_model().objects.get_or_create(username=USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    token_output = StringIO()
    call_command("create_api_token", USERNAME, "--staff", stdout=token_output)
    token = token_output.getvalue().strip().splitlines()[-1]
    connection.close()  # gunicorn's workers open their own

    base = f"http://{HOST}:{port}"
    sys.stdout.write(
        f"""
pay10 on {connection.settings_dict['NAME']}
  Admin:     {base}/admin/   (user {USERNAME}, password {password})
  Step 7:    Admin home -> "Finance dashboard" (FIN-01 figures, aging); Billing -> Invoices
             (paid / balance / status; open one for its allocations and audit history);
             Payments -> Payments (filter PENDING, action "Verify").
  API token: {token}
             curl -H "Authorization: Bearer {token}" "{base}/api/billing/admin/finance/summary?period=ALL_TIME"
  Health:    {base}/healthz  {base}/readyz
Ctrl-C stops the server.

""")
    sys.stdout.flush()
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.py"), "--bind", f"{HOST}:{port}"]
    os.environ.setdefault("WEB_CONCURRENCY", "2")
    os.chdir(ROOT)
    os.execv(sys.executable, gunicorn)


if __name__ == "__main__":
    sys.exit(main())
