"""The data migration `payments 0003_pay10_backfill`: a plain `migrate` on a legacy database ends
fully migrated; reversing to `payments 0001_initial` leaves the legacy tables exactly as they were;
migrating forward again gives the same result. On PostgreSQL the same `migrate` then builds the
FIN-01/FIN-02 read model (0004/0005), which readers use from then on."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billing.models import Invoice
from billing.selectors import finance
from billing.selectors.finance import Period, finance_summary
from payments.models import BackfillRun, InvoiceFigures, InvoiceMigration, PaymentMigration
from payments.selectors.figures import figures_ready
from payments.selectors.verification import check_read_model
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import money_state

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


@pytest.mark.postgres
def test_the_final_migrate_builds_the_read_model_that_readers_then_use(legacy_database, monkeypatch):
    legacy_seed(tenant_id="rcme-dev", invoices=80, seed=5)
    live_before = finance_summary(tenant=None, period=Period.ALL_TIME)  # legacy state: computed live

    migrate()  # 0002, 0003 (the backfill), 0004 and 0005 (the read model, built over the backfilled invoices)
    assert figures_ready()
    assert InvoiceFigures.objects.count() == Invoice.objects.count()
    assert check_read_model().ok
    from_read_model = finance_summary(tenant=None, period=Period.ALL_TIME)
    assert from_read_model["currencies"].keys() == live_before["currencies"].keys()
    monkeypatch.setattr(finance, "figures_ready", lambda: False)
    assert finance_summary(tenant=None, period=Period.ALL_TIME) == from_read_model
    monkeypatch.undo()

    migrate("payments", "0003_pay10_backfill")  # drops the read model only
    assert not figures_ready()
    assert InvoiceMigration.objects.count() == Invoice.objects.count()
