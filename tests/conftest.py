"""Suite-wide rules: PostgreSQL-only tests skip on SQLite with a reason, and under CI=true a
skip on PostgreSQL fails the run. The flushes between transactional tests unlock the audit log's
TRUNCATE guard deliberately (the owner's unlock, `payments/database/audit_truncate_v1.py`); nothing else does.
The suite's API calls and admin logins are neither throttled nor locked out by accident: its
throttle rates are high and django-axes' counts are cleared before each test. `legacy_database`
gives a test the legacy schema (`payments 0001_initial`) and migrates back to head after it."""
import os
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, transaction
from django.db.backends.postgresql.operations import DatabaseOperations

from payments.database.audit_truncate_v1 import UNLOCK_SQL

_flush = DatabaseOperations.execute_sql_flush


def _flush_unlocking_the_audit_log(self, sql_list):
    with transaction.atomic(using=self.connection.alias):
        with self.connection.cursor() as cursor:
            cursor.execute(UNLOCK_SQL)
        _flush(self, sql_list)


DatabaseOperations.execute_sql_flush = _flush_unlocking_the_audit_log


@pytest.fixture
def legacy_database():
    """The database at the legacy state (`payments 0001_initial`) for the test; head again after it."""
    call_command("migrate", "payments", "0001_initial", verbosity=0, stdout=StringIO())
    try:
        yield
    finally:
        call_command("migrate", verbosity=0, stdout=StringIO())


@pytest.fixture(autouse=True)
def _fresh_throttle_and_lockout_counts():
    """Throttle histories live in the cache; axes' failures in its tables (flushed or rolled back)."""
    cache.clear()
    yield
    cache.clear()

SKIPPED_ON_POSTGRES = "PostgreSQL run skipped {count} test(s); under CI=true nothing may skip there"


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (row locks, advisory locks, triggers); running on SQLite")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI", "").lower() != "true" or connection.vendor != "postgresql":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(SKIPPED_ON_POSTGRES.format(count=skipped), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
