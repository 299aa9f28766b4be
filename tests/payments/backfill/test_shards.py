"""`pay10_backfill --shard i/K`: K workers over disjoint ids, each resumable, each locked."""
import fcntl
import threading
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from payments.models import BackfillRun, InvoiceMigration
from payments.services import backfill
from payments.services.backfill import locks as backfill_locks
from payments.services.backfill import common as backfill_common
from payments.services.backfill import Shard
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import Crash, money_state, other_connection

pytestmark = [pytest.mark.pay10_regression]

TENANT = "rcme-dev"
INVOICES = 60
BATCH = 10
FIRST, SECOND = Shard(1, 2), Shard(2, 2)


def seed() -> None:
    legacy_seed(tenant_id=TENANT, invoices=INVOICES, seed=5)


def one_run_state() -> tuple[dict, dict]:
    """The state and counts of one unsharded run, then undone."""
    summary = backfill.backfill_run(batch_size=BATCH)
    state = money_state()
    backfill.backfill_reverse()
    assert not InvoiceMigration.objects.exists()
    return state, summary.counts


def summed(counts: list[dict]) -> dict:
    total: dict = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@pytest.mark.django_db
def test_two_shards_one_after_the_other_end_like_one_run():
    seed()
    uninterrupted, counts = one_run_state()

    first = backfill.backfill_run(batch_size=BATCH, shard=FIRST)
    second = backfill.backfill_run(batch_size=BATCH, shard=SECOND)

    assert money_state() == uninterrupted
    assert summed([first.counts, second.counts]) == counts
    assert first.counts["payments"] > 0 and second.counts["payments"] > 0
    runs = BackfillRun.objects.order_by("pk")
    assert [(run.state, run.counts["shard"]) for run in runs] == [("COMPLETED", "1/2"), ("COMPLETED", "2/2")]


@pytest.mark.django_db
def test_a_shard_takes_only_its_own_invoices():
    seed()
    backfill.backfill_run(batch_size=BATCH, shard=FIRST)
    run = BackfillRun.objects.get()
    own = set(InvoiceMigration.objects.filter(run=run).values_list("invoice_id", flat=True))
    assert own and all(invoice_id % 2 == 0 for invoice_id in own)


@pytest.mark.django_db
def test_a_killed_shard_resumes_its_own_run_while_the_other_shard_completes(monkeypatch):
    seed()
    uninterrupted, _ = one_run_state()

    def crash(stage, batch):
        if (stage, batch) == ("mid-batch", 2):
            raise Crash("killed")

    monkeypatch.setattr(backfill_common, "crash_hook", crash)
    with pytest.raises(Crash):
        backfill.backfill_run(batch_size=BATCH, shard=FIRST)
    monkeypatch.setattr(backfill_common, "crash_hook", None)

    other = backfill.backfill_run(batch_size=BATCH, shard=SECOND)
    resumed = backfill.backfill_run(batch_size=BATCH, shard=FIRST)

    assert not other.resumed
    assert resumed.resumed
    assert money_state() == uninterrupted
    assert BackfillRun.objects.filter(state="COMPLETED").count() == 2


@contextmanager
def held_by_another_process(*, shard: Shard | None, shared: bool = False):
    """Hold a runner lock the way another process would: the backfill lock (exclusive, or shared
    as a running shard holds it), or one shard's lock."""
    if connection.vendor == "postgresql":
        other = other_connection()
        try:
            if shard is not None:
                other.execute("SELECT pg_advisory_lock(%s)", [shard.lock_key])
            else:
                function = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
                other.execute(f"SELECT {function}(%s)", [backfill.ADVISORY_LOCK_KEY])
            yield
        finally:
            other.close()
    else:
        with open(backfill_locks._sqlite_lock_path(connection, shard=shard), "a") as held:
            fcntl.flock(held, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            yield


@pytest.mark.django_db
def test_a_second_run_of_the_same_shard_is_refused_and_the_other_shard_runs():
    seed()
    with held_by_another_process(shard=FIRST):
        with pytest.raises(backfill.BackfillError, match="shard 1/2 of the PAY-10 backfill is already running"):
            backfill.backfill_run(batch_size=BATCH, shard=FIRST)
        assert not InvoiceMigration.objects.exists()
        backfill.backfill_run(batch_size=BATCH, shard=SECOND)
    assert InvoiceMigration.objects.exists()
    assert advisory_locks_held_here() == 0  # the refused run let go of the lock it had taken


def advisory_locks_held_here() -> int:
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_an_unsharded_run_is_refused_while_a_shard_runs_and_a_shard_while_an_unsharded_run_does():
    seed()
    with held_by_another_process(shard=None, shared=True):
        with pytest.raises(backfill.BackfillError, match=backfill.BACKFILL_ALREADY_RUNNING):
            backfill.backfill_run(batch_size=BATCH)
    with held_by_another_process(shard=None):
        with pytest.raises(backfill.BackfillError, match="shard 2/2"):
            backfill.backfill_run(batch_size=BATCH, shard=SECOND)
    assert not InvoiceMigration.objects.exists()


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", ""])
def test_a_shard_outside_1_to_k_is_refused(text):
    with pytest.raises(ValueError, match="a shard is i/K with 1 <= i <= K"):
        Shard.parse(text)


@pytest.mark.django_db
def test_command_refuses_a_malformed_shard_and_runs_a_good_one():
    seed()
    with pytest.raises(CommandError, match="a shard is i/K"):
        call_command("pay10_backfill", "--shard", "3/2", stdout=StringIO())
    out = StringIO()
    call_command("pay10_backfill", "--shard", "1/2", "--batch-size", str(BATCH), stdout=out)
    assert "Migration complete!" in out.getvalue()
    assert "Shard 1/2 done" in out.getvalue()
    assert BackfillRun.objects.get().counts["shard"] == "1/2"


# --------------------------------------------------------------------------------------------
# PostgreSQL: shards at the same time


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_shards_running_at_the_same_time_end_like_one_run():
    seed()
    uninterrupted, counts = one_run_state()
    summaries, errors = {}, []

    def worker(shard: Shard) -> None:
        try:
            summaries[shard.label] = backfill.backfill_run(batch_size=5, shard=shard)
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(shard,)) for shard in (FIRST, SECOND)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert money_state() == uninterrupted
    assert summed([summary.counts for summary in summaries.values()]) == counts
