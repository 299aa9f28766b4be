"""Planner statistics of the PAY-10 tables (issue 11).

A bulk write (the backfill) grows tables from nothing faster than autovacuum's ANALYZE follows it;
a query planned on "this table is empty" statistics picks nested loops over millions of rows
(`pay10_verify` took minutes instead of seconds on a never-analyzed database). So the backfill
ANALYZEs what it wrote, as the tables grow and at the end, and `pay10_verify` ANALYZEs the tables it
reads whose statistics are missing or stale before it plans anything. PostgreSQL only; ANALYZE
takes SHARE UPDATE EXCLUSIVE (reads and writes go on) and samples a bounded number of rows, so its
cost does not grow with the table; SKIP_LOCKED leaves a table another session is analyzing.
"""
from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

# What the backfill writes.
BACKFILL_TABLES = (
    "billing_invoice", "payments_payment", "payments_allocation", "payments_credit",
    "payments_paymentauditlog", "payments_invoicemigration", "payments_paymentmigration",
    "payments_backfilldeviation",
)
# What pay10_verify reads.
VERIFY_TABLES = BACKFILL_TABLES + (
    "payments_allocationreversal", "payments_refund", "payments_invoicefigures", "payments_invoicerollup",
    "payments_invoiceduerollup", "payments_invoiceblock", "payments_tenantbalance",
)
# Stale: more rows changed since the last ANALYZE than this share of the table (autovacuum's own
# default threshold, autovacuum_analyze_scale_factor) plus a few.
STALE_SHARE = 0.1
STALE_ROWS = 50


def stale_tables(tables, *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Those of `tables` (that exist) never analyzed, or changed by more than STALE_SHARE since."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT relname FROM pg_stat_user_tables
            WHERE schemaname = current_schema() AND relname = ANY (%s)
              AND ((last_analyze IS NULL AND last_autoanalyze IS NULL)
                   OR n_mod_since_analyze > %s * greatest(n_live_tup, 0) + %s)
            ORDER BY relname
            """,
            [list(tables), STALE_SHARE, STALE_ROWS],
        )
        return [row[0] for row in cursor.fetchall()]


def analyze(tables, *, using: str = DEFAULT_DB_ALIAS, only_stale: bool = False) -> list[str]:
    """ANALYZE `tables` (those that exist; with `only_stale`, those `stale_tables` names). Returns
    the tables analyzed. Nothing off PostgreSQL, or inside a transaction (a dry run's)."""
    connection = connections[using]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return []
    if only_stale:
        names = stale_tables(tables, using=using)
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT relname FROM pg_class WHERE relname = ANY (%s) AND relkind = 'r'"
                           " AND relnamespace = current_schema()::regnamespace", [list(tables)])
            names = sorted(row[0] for row in cursor.fetchall())
    if names:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE (SKIP_LOCKED) " + ", ".join(connection.ops.quote_name(n) for n in names))
    return names


class GrowingTables:
    """ANALYZE what the backfill wrote after batches 1, 2, 4, 8, ... (so the statistics never lag
    the tables by more than half their size, at a cost that grows with the log of the batch count)
    and once at the end."""

    def __init__(self, *, using: str = DEFAULT_DB_ALIAS):
        self.using = using
        self.batches = 0
        self.next_at = 1

    def batch_done(self) -> None:
        self.batches += 1
        if self.batches >= self.next_at:
            self.next_at *= 2
            analyze(BACKFILL_TABLES, using=self.using)

    def finished(self) -> None:
        analyze(BACKFILL_TABLES, using=self.using)
