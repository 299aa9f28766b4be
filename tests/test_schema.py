"""The schema contract of SPEC.md: the legacy state, the PAY-10 state, and the way between them."""
import pytest
from django.core.management import call_command
from django.db import connection

LEGACY_COLUMNS = {
    "billing_tenant": {"id", "name", "currency", "created_at"},
    "billing_invoice": {
        "id", "tenant_id", "number", "amount_cents", "currency", "status", "amount_paid_cents",
        "issued_at", "due_date", "paid_at", "created_at", "updated_at",
    },
    "payments_payment": {
        "id", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "reference", "status",
        "received_at", "created_at",
    },
}
PAY10_TABLES = {"payments_allocation", "payments_credit", "payments_paymentauditlog"}
PAY10_PAYMENT_COLUMNS = {"channel", "verification_status", "idempotency_key"}

LEGACY_INSERTS = [
    "INSERT INTO billing_tenant (id, name, currency, created_at) VALUES ('rcme-dev', 'RCME Dev', 'USD', '2024-01-01T00:00:00Z')",
    "INSERT INTO billing_invoice (id, tenant_id, number, amount_cents, currency, status, amount_paid_cents, issued_at,"
    " due_date, paid_at, created_at, updated_at) VALUES (1, 'rcme-dev', 'INV-1', 10000, 'USD', 'PARTIALLY_PAID', 2500,"
    " '2024-02-01T00:00:00Z', '2024-03-01', NULL, '2024-02-01T00:00:00Z', '2024-02-01T00:00:00Z')",
    "INSERT INTO payments_payment (id, tenant_id, invoice_id, amount_cents, currency, method, reference, status,"
    " received_at, created_at) VALUES (1, 'rcme-dev', 1, 2500, 'USD', 'Card', '', 'SUCCEEDED', '2024-02-10T00:00:00Z',"
    " '2024-02-10T00:00:00Z')",
]


def _columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def _tables() -> set[str]:
    return set(connection.introspection.table_names())


@pytest.fixture
def legacy_state(transactional_db):
    """The database at `payments 0001_initial`; brought back to the latest state afterwards."""
    call_command("migrate", "payments", "0001_initial", verbosity=0)
    yield
    with connection.cursor() as cursor:
        for table in ("payments_payment", "billing_invoice", "billing_tenant"):
            cursor.execute(f"DELETE FROM {table}")
    call_command("migrate", verbosity=0)


def test_legacy_state_has_exactly_the_legacy_columns(legacy_state):
    for table, columns in LEGACY_COLUMNS.items():
        assert _columns(table) == columns, table
    assert not PAY10_TABLES & _tables()


def test_legacy_state_accepts_plain_sql_inserts_naming_only_legacy_columns(legacy_state):
    with connection.cursor() as cursor:
        for statement in LEGACY_INSERTS:
            cursor.execute(statement)
        cursor.execute("SELECT COUNT(*) FROM payments_payment")
        assert cursor.fetchone()[0] == 1


def test_pay10_schema_adds_tables_and_payment_fields_and_reverses_cleanly(legacy_state):
    call_command("migrate", "payments", "0002_pay10_schema", verbosity=0)
    assert PAY10_TABLES <= _tables()
    assert _columns("payments_payment") == LEGACY_COLUMNS["payments_payment"] | PAY10_PAYMENT_COLUMNS | {"request_fingerprint"}
    call_command("migrate", "payments", "0001_initial", verbosity=0)
    for table, columns in LEGACY_COLUMNS.items():
        assert _columns(table) == columns, table
    assert not PAY10_TABLES & _tables()
    assert "billing_tenantmember" not in _tables()


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits 1 on a missing migration
