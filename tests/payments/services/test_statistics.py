"""Planner statistics (issue 11): the backfill ANALYZEs what it writes, as the tables grow and at the
end; pay10_verify ANALYZEs the tables it reads whose statistics are missing or stale."""
import pytest
from django.db import connection

from payments.services import backfill, statistics
from payments.demo.legacy_seed import legacy_seed
from payments.selectors.verification import verification_run

pytestmark = [pytest.mark.postgres]


def _analyzed(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def _forget_statistics() -> None:
    """pg_stat_reset: every table looks never analyzed (pg_stat's view of it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_reset()")


@pytest.mark.django_db(transaction=True)
def test_the_backfill_analyzes_what_it_wrote_as_the_tables_grow_and_at_the_end():
    legacy_seed(tenant_id="rcme-dev", invoices=40, seed=3)
    _forget_statistics()
    backfill.backfill_run(batch_size=5)  # 8 invoice batches, then the payments': ANALYZE after 1, 2, 4, 8, .. and at the end
    counts = {table: _analyzed(table) for table in statistics.BACKFILL_TABLES}
    assert all(count >= 4 for count in counts.values()), counts
    assert statistics.stale_tables(statistics.BACKFILL_TABLES) == []


@pytest.mark.django_db(transaction=True)
def test_verify_analyzes_the_tables_it_reads_when_their_statistics_are_missing():
    legacy_seed(tenant_id="rcme-dev", invoices=20, seed=4)
    backfill.backfill_run(batch_size=50)
    _forget_statistics()
    assert "payments_allocation" in statistics.stale_tables(statistics.VERIFY_TABLES)
    from django.utils import timezone

    verification_run(tenant=None, today=timezone.localdate(), allow_partial=False)
    assert _analyzed("payments_allocation") == 1
    assert statistics.stale_tables(statistics.VERIFY_TABLES) == []
    verification_run(tenant=None, today=timezone.localdate(), allow_partial=False)
    assert _analyzed("payments_allocation") == 1  # fresh statistics: not analyzed again


@pytest.mark.django_db
def test_nothing_is_analyzed_inside_a_transaction():
    assert statistics.analyze(statistics.BACKFILL_TABLES) == []
