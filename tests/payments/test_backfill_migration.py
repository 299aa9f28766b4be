"""The data migration `payments 0003_pay10_backfill`: a plain `migrate` on a legacy database ends
fully migrated; reversing to `payments 0001_initial` leaves the legacy tables exactly as they were;
migrating forward again gives the same result."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billing.models import Invoice
from payments.models import BackfillRun, InvoiceMigration, PaymentMigration
from payments.services.legacy_seed import legacy_seed
from tests.payments.test_backfill_run import money_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.pay10_regression]

LEGACY_TABLES = ("billing_tenant", "billing_invoice", "payments_payment")


def legacy_dump() -> dict:
    """Every column of every row of the legacy tables, as the database holds them."""
    dump = {}
    with connection.cursor() as cursor:
        for table in LEGACY_TABLES:
            cursor.execute(f"SELECT * FROM {table} ORDER BY 1")
            dump[table] = ([column[0] for column in cursor.description], cursor.fetchall())
    return dump


def migrate(*args) -> None:
    call_command("migrate", *args, verbosity=0, stdout=StringIO())


@pytest.fixture
def legacy_database():
    migrate("payments", "0001_initial")
    try:
        yield
    finally:
        migrate()


def test_migrate_backfills_and_reverse_restores_the_legacy_tables_exactly(legacy_database):
    legacy_seed(tenant_id="rcme-dev", invoices=60, seed=3)
    before = legacy_dump()
    with pytest.raises(CommandError, match="the PAY-10 schema is not installed"):
        call_command("pay10_backfill", stdout=StringIO())

    migrate()
    assert InvoiceMigration.objects.count() == Invoice.objects.count()
    assert BackfillRun.objects.get().state == "COMPLETED"
    first = money_state()

    migrate("payments", "0001_initial")
    assert legacy_dump() == before

    migrate()
    assert money_state() == first
    assert PaymentMigration.objects.count() > 0
