"""Suite-wide rules: PostgreSQL-only tests skip on SQLite with a reason, and under CI=true a
skip on PostgreSQL fails the run."""
import os

import pytest
from django.db import connection

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
