"""bench/same_rows_floor.sql writes the same rows as `pay10_backfill` (issue 14's same-rows floor).

The bench compares the backfill's time with this floor's, so the floor must write what the backfill
writes: on a small generated legacy data set at `0002_pay10_schema`, the floor runs in a transaction
(the user triggers disabled in it, as bench/backfill.py does on its copy; the foreign keys checked
before reading) and is rolled back; then `pay10_backfill` runs; every row either wrote is compared
without its generated ids, timestamps and run id. PostgreSQL only (the floor is PostgreSQL SQL).

A `transaction=True` test: it leaves the test database migrated to the latest state again.
"""
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, transaction

pytestmark = [pytest.mark.django_db(transaction=True)]

FLOOR = Path(__file__).resolve().parent.parent / "bench" / "same_rows_floor.sql"
TABLES_WITH_TRIGGERS = "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal"

# Every row the backfill writes, without ids it draws, times, or its run: a synthetic payment is
# named by its invoice, an allocation or credit by its invoice and payment, an audit row by what
# it describes.
ROWS = {
    "credits": "SELECT source_payment_id, amount_cents, reason, tenant_id, currency, backfilled FROM payments_credit",
    "allocations": "SELECT a.invoice_id, CASE WHEN p.channel = 'LEGACY' THEN 0 ELSE a.payment_id END, a.amount_cents, "
    "a.tenant_id, a.backfilled FROM payments_allocation a JOIN payments_payment p ON p.id = a.payment_id",
    "invoices": "SELECT id, status FROM billing_invoice",
    "payments": "SELECT id, channel, verification_status FROM payments_payment WHERE channel IS DISTINCT FROM 'LEGACY'",
    "synthetic_payments": "SELECT invoice_id, tenant_id, amount_cents, currency, method, reference, status, received_at, "
    "verification_status, idempotency_key FROM payments_payment WHERE channel = 'LEGACY'",
    "deviations": "SELECT kind, tenant_id, invoice_id, invoice_number, CASE WHEN kind = 'SHORTFALL_COVERED' THEN 0 "
    "ELSE payment_id END, legacy, new, detail FROM payments_backfilldeviation",
    "invoice_markers": "SELECT invoice_id, legacy_status, legacy_amount_paid_cents, legacy_paid_cents, legacy_updated_at "
    "FROM payments_invoicemigration",
    "payment_markers": "SELECT payment_id FROM payments_paymentmigration",
    "audit": "SELECT tenant_id, actor_label, event_type, invoice_id, "
    "CASE WHEN event_type = 'PAYMENT_BACKFILLED' THEN payment_id END, credit_id IS NULL, amount_cents, before, "
    "after - 'allocations' - 'syntheticPaymentId' - 'credit', (after ->> 'syntheticPaymentId') IS NULL, "
    "(SELECT array_agg(jsonb_build_array(e -> 'invoiceId', e -> 'amountCents') ORDER BY jsonb_build_array(e -> 'invoiceId', e -> 'amountCents')) "
    " FROM jsonb_array_elements(after -> 'allocations') e), "
    "CASE WHEN jsonb_typeof(after -> 'credit') = 'object' THEN (after -> 'credit') - 'creditId' END, extra -> 'deviations', backfilled FROM payments_paymentauditlog",
}


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def written() -> dict[str, list[tuple]]:
    with connection.cursor() as cursor:
        result = {}
        for name, sql in ROWS.items():
            cursor.execute(sql)
            result[name] = sorted(cursor.fetchall(), key=repr)
        return result


class RolledBack(Exception):
    pass


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the floor is PostgreSQL SQL")
def test_same_rows_floor_writes_what_the_backfill_writes(legacy_database):
    run("pay10_seed_legacy", "--tenant", "rcme-dev", "--invoices", "400", "--seed", "3")
    run("migrate", "payments", "0002_pay10_schema", "--verbosity", "0")
    legacy = written()
    floor = None
    with pytest.raises(RolledBack):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(TABLES_WITH_TRIGGERS)
                for (table,) in cursor.fetchall():
                    cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
                cursor.execute(FLOOR.read_text())
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the foreign keys, checked now
            floor = written()
            raise RolledBack
    assert written() == legacy  # rolled back: the backfill starts from the same legacy data
    run("pay10_backfill", "--batch-size", "150")
    backfill = written()
    assert backfill["audit"] and backfill["deviations"] and backfill["synthetic_payments"] and backfill["credits"]
    for name in ROWS:
        assert floor[name] == backfill[name], name
