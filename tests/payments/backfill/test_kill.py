"""A real `kill -9` of `manage.py pay10_backfill` on PostgreSQL, then a re-run: the end state equals
an uninterrupted run's."""
import os
import signal
import subprocess
import sys
import time

import pytest

from payments.models import BackfillRun
from payments.services import backfill
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import ROOT, database_url, money_state

pytestmark = [pytest.mark.postgres, pytest.mark.pay10_regression, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 60


def resume_when_the_killed_session_is_gone():
    """The server ends a killed client's session (releasing its advisory lock) once it notices."""
    started = time.monotonic()
    while True:
        try:
            return backfill.backfill_run(batch_size=20)
        except backfill.BackfillError:
            assert time.monotonic() - started < DEADLINE_SECONDS
            time.sleep(0.2)


def test_backfill_killed_with_sigkill_resumes_to_the_uninterrupted_result():
    legacy_seed(tenant_id="rcme-dev", invoices=200, seed=11)
    backfill.backfill_run(batch_size=20)
    uninterrupted = money_state()
    backfill.backfill_reverse()

    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "pay10_backfill", "--batch-size", "20"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        started = time.monotonic()
        while not BackfillRun.objects.filter(cursor_invoice_id__gt=0).exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() - started < DEADLINE_SECONDS
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    run = BackfillRun.objects.get()
    assert run.state == "RUNNING" and run.cursor_invoice_id < run.upper_invoice_id

    summary = resume_when_the_killed_session_is_gone()

    assert summary.resumed
    assert money_state() == uninterrupted
