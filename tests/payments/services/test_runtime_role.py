"""Issue 10 point 6: the service runs as a least-privilege PostgreSQL role (`pay10_grant_runtime`),
which cannot erase the audit log; and the audit log refuses TRUNCATE for every role.

The money paths are driven through the HTTP API with the default database connection logged in as
the runtime role itself (a real login, `session_user` is the role), so every statement the views,
services, commit-time triggers and migrate-on-first-write run is checked against its grants.
"""
from contextlib import contextmanager
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import InvoiceStatus
from billing.services.api_tokens import api_token_create
from payments.database.audit_truncate_v1 import UNLOCK_SQL
from payments.models import BackfillRun, Credit, InvoiceMigration, Payment, PaymentAuditLog, Refund
from payments.selectors.verification import verification_run
from payments.services.runtime_role import RUNTIME_GRANTS, unmapped_tables
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import MigratedInvoiceFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _role_name() -> str:
    # Roles are cluster-wide: named after this run's test database, so parallel runs never share one.
    return f"{connection.settings_dict['NAME']}_runtime"


def _drop_role(cursor, role: str) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone():
        cursor.execute(f'DROP OWNED BY "{role}"')
        cursor.execute(f'DROP ROLE "{role}"')


@pytest.fixture
def runtime_role():
    role = _role_name()
    with connection.cursor() as cursor:
        _drop_role(cursor, role)
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        _drop_role(cursor, role)


@contextmanager
def connected_as(role: str):
    """The default connection, logged in as `role` (trust authentication on this server)."""
    connection.close()
    owner = connection.settings_dict["USER"]
    connection.settings_dict["USER"] = role
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"] = owner


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_every_table_is_granted_or_deliberately_owner_only():
    with connection.cursor() as cursor:
        assert unmapped_tables(cursor) == []


def test_the_grant_command_refuses_a_missing_role_and_the_owner():
    with pytest.raises(CommandError, match="does not exist"):
        call_command("pay10_grant_runtime", "no_such_role_sec", stdout=StringIO())
    with pytest.raises(CommandError, match="superuser"):
        call_command("pay10_grant_runtime", connection.settings_dict["USER"], stdout=StringIO())


def test_the_service_runs_every_money_path_as_the_runtime_role(runtime_role):
    tenant = TenantFactory(id="acme", currency="KES")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    second = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000)
    voided = MigratedInvoiceFactory(tenant=tenant, amount_cents=4_000)
    legacy = InvoiceFactory(tenant=tenant, status=InvoiceStatus.PARTIALLY_PAID, amount_cents=5_000, amount_paid_cents=1_000)
    staff = _bearer(api_token_create(username="finance", staff=True)[1])
    tenant_api = _bearer(api_token_create(username="acme-api", tenant_id="acme")[1])
    admin_user = get_user_model().objects.create_superuser(username="root", email="r@example.com", password="x-Long-pass-42!")
    out = StringIO()
    call_command("pay10_grant_runtime", runtime_role, stdout=out)
    assert f"Granted role {runtime_role}" in out.getvalue()

    with connected_as(runtime_role):
        with connection.cursor() as cursor:
            cursor.execute("SELECT session_user, current_user")
            assert cursor.fetchone() == (runtime_role, runtime_role)

        def ok(response, status=200):
            assert response.status_code == status, response.content
            return response.json()

        body = {"amountCents": 6_000, "currency": "KES", "channel": "CARD"}
        pending = ok(tenant_api.post("/api/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"), 201)
        assert ok(tenant_api.post("/api/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"))["id"] == pending["id"]
        ok(staff.post(f"/api/payments/{pending['id']}/allocations", {"invoiceId": invoice.pk, "amountCents": 2_000}, format="json"), 201)
        ok(staff.post(f"/api/payments/{pending['id']}/verify"))
        verified = ok(staff.post("/api/payments", {"tenant": "acme", **body, "amountCents": 9_000, "verificationStatus": "VERIFIED"}, format="json"), 201)
        # migrate-on-first-write: the legacy invoice is migrated by this write, as the runtime role
        ok(staff.post(f"/api/payments/{verified['id']}/allocations", {"invoiceId": legacy.pk, "amountCents": 500}, format="json"), 201)
        ok(staff.post(f"/api/payments/{verified['id']}/allocations", {"invoiceId": voided.pk, "amountCents": 2_000}, format="json"), 201)
        ok(staff.post(f"/api/invoices/{voided.pk}/void"))  # its verified money becomes credit
        auto = ok(staff.post(f"/api/payments/{verified['id']}/auto-allocate"))
        assert auto["allocations"]
        credit_id = Credit.objects.filter(source_payment_id=verified["id"]).values_list("pk", flat=True).first()
        assert credit_id is not None
        reversed_allocation = auto["allocations"][0]["id"]
        ok(staff.post(f"/api/allocations/{reversed_allocation}/reverse", {"reason": "wrong invoice"}, format="json"))
        ok(staff.post(f"/api/credits/{credit_id}/apply", {"invoiceId": second.pk, "amountCents": 500}, format="json"), 201)
        ok(staff.post(f"/api/payments/{verified['id']}/refund", {"amountCents": 1_000, "reason": "customer asked"}, format="json"))
        doomed = ok(tenant_api.post("/api/payments", {**body, "amountCents": 700}, format="json"), 201)
        ok(staff.post(f"/api/payments/{doomed['id']}/reject", {"reason": "bounced"}, format="json"))
        fin01 = ok(staff.get("/api/billing/admin/finance/summary", {"period": "ALL_TIME"}))
        assert fin01["currencies"]["KES"]["collectedCents"] > 0
        fin02 = ok(tenant_api.get("/api/billing/invoices/tenant"))
        assert fin02["count"] == 4
        ok(tenant_api.get(f"/api/payments/{pending['id']}"))
        browser = Client()
        browser.force_login(admin_user)
        assert browser.get("/admin/payments/payment/").status_code == 200
        assert browser.get("/admin/billing/invoice/finance-dashboard/").status_code == 200

    assert InvoiceMigration.objects.filter(invoice=legacy).exists()
    assert Refund.objects.count() == 1
    assert Payment.objects.get(pk=doomed["id"]).verification_status == "REJECTED"
    assert PaymentAuditLog.objects.filter(extra__origin__requestId__isnull=False).count() >= 10
    checks = verification_run(tenant=None, today=timezone.localdate(), allow_partial=True)
    assert [check.name for check in checks if not check.ok] == []


def _refused(sql: str) -> str:
    """Run `sql` in a transaction that is rolled back either way; the error it raised, if any."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                for statement in sql.split(";"):
                    if statement.strip():
                        cursor.execute(statement)
            raise _RolledBack
    except _RolledBack:
        return ""
    except DatabaseError as error:
        return str(error)


class _RolledBack(Exception):
    pass


def test_the_runtime_role_cannot_delete_update_or_truncate_audit_rows(runtime_role):
    tenant = TenantFactory(id="acme", currency="KES")
    PaymentAuditLog.objects.create(tenant=tenant, actor_label="someone", event_type="PAYMENT_RECORDED", amount_cents=1)
    call_command("pay10_grant_runtime", runtime_role, stdout=StringIO())

    with connected_as(runtime_role):
        assert "permission denied" in _refused("DELETE FROM payments_paymentauditlog")
        assert "permission denied" in _refused(
            "SET LOCAL pay10.audit_purge = 'on'; DELETE FROM payments_paymentauditlog"
        )
        assert "permission denied" in _refused("UPDATE payments_paymentauditlog SET amount_cents = 2")
        assert "permission denied" in _refused("TRUNCATE payments_paymentauditlog")
        assert "permission denied" in _refused(f"{UNLOCK_SQL}; TRUNCATE payments_paymentauditlog")
        assert "permission denied" in _refused("TRUNCATE billing_tenant CASCADE")
        assert "permission denied" in _refused("SET LOCAL pay10.audit_purge = 'on'; DELETE FROM payments_allocation")
        assert "must be owner" in _refused("ALTER TABLE payments_paymentauditlog DISABLE TRIGGER ALL")
        assert "permission denied" in _refused("SET session_replication_role = replica")
        for table, privileges in RUNTIME_GRANTS.items():
            assert "TRUNCATE" not in privileges, table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = current_user AND table_name = 'payments_paymentauditlog' ORDER BY 1"
            )
            assert [row[0] for row in cursor.fetchall()] == ["INSERT", "SELECT"]
    assert PaymentAuditLog.objects.count() == 1


def test_the_audit_log_refuses_truncate_even_for_its_owner():
    tenant = TenantFactory(id="acme", currency="KES")
    PaymentAuditLog.objects.create(tenant=tenant, actor_label="someone", event_type="PAYMENT_RECORDED", amount_cents=1)

    for sql in ("TRUNCATE payments_paymentauditlog", "TRUNCATE billing_tenant CASCADE"):
        assert "TRUNCATE refused" in _refused(sql), sql
    # the owner's deliberate unlock (what the suite's flushes do) lets it through
    assert _refused(f"{UNLOCK_SQL}; TRUNCATE payments_paymentauditlog") == ""
    assert PaymentAuditLog.objects.count() == 1


def test_the_unlock_is_the_owners_alone(runtime_role):
    """Even a role that was granted TRUNCATE cannot use the unlock: it is not the table's owner."""
    call_command("pay10_grant_runtime", runtime_role, stdout=StringIO())
    with connection.cursor() as cursor:
        cursor.execute(f'GRANT TRUNCATE ON payments_paymentauditlog TO "{runtime_role}"')

    with connected_as(runtime_role):
        assert "TRUNCATE refused" in _refused(f"{UNLOCK_SQL}; TRUNCATE payments_paymentauditlog")


def test_the_runtime_roles_commands_run_as_that_role(runtime_role, tmp_path):
    """The commands docs/runbook.md gives the runtime role: token lifecycle, daily refresh, verify,
    baseline, and steering a backfill (which changes a run's state and nothing else of it)."""
    tenant = TenantFactory(id="acme", currency="KES")
    MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
    backfill = BackfillRun.objects.create(batch_size=1000, upper_invoice_id=10)
    call_command("pay10_grant_runtime", runtime_role, stdout=StringIO())

    with connected_as(runtime_role):
        call_command("pay10_backfill_control", "pause", stdout=StringIO())
        call_command("pay10_backfill_control", "status", stdout=StringIO())
        assert "permission denied" in _refused("UPDATE payments_backfillrun SET cursor_invoice_id = 10")
        token = StringIO()
        call_command("create_api_token", "ops", "--staff", stdout=token)
        call_command("create_api_token", "acme-api", "--tenant", "acme", stdout=StringIO())
        revoked = StringIO()
        call_command("revoke_api_tokens", "ops", stdout=revoked)
        call_command("pay10_refresh_statuses", stdout=StringIO())
        call_command("pay10_baseline", "--out", str(tmp_path / "baseline.json"), stdout=StringIO())
        call_command("pay10_verify", "--allow-partial", stdout=StringIO())

    assert revoked.getvalue().strip() == "Revoked 1 token(s) of ops."
    backfill.refresh_from_db()
    assert backfill.state == BackfillRun.State.PAUSED
    assert (tmp_path / "baseline.json").exists()
