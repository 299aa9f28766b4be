"""`manage.py pay10_cleanup_orphans` and `payments.services.orphans`.

Orphans need writes that go around the foreign keys. Inside a test transaction that is easy on
both backends: Django creates foreign keys DEFERRABLE INITIALLY DEFERRED, and the transaction is
rolled back before they would be checked (`broken_ledger` skips Django's end-of-test check, see
tests/payments/ledgers.py); PostgreSQL's deferred PAY-10 guard triggers likewise never
fire. The committed test at the end breaks a foreign key the way production would: PostgreSQL
with `session_replication_role = replica` (triggers off), SQLite with `PRAGMA foreign_keys = OFF`.
"""
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from billing.models import Invoice, InvoiceStatus
from payments.management.commands.pay10_cleanup_orphans import NONE_FOUND
from payments.models import Allocation, AllocationReversal, AuditEvent, Credit, InvoiceMigration, PaymentAuditLog
from payments.selectors.verification import check_no_orphans
from payments.services.audit import os_user
from payments.services.orphans import ORPHAN_REVERSAL_REASON, orphans_cleanup
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory
from tests.payments.ledgers import allocate, broken_ledger, consistent_ledger, ledger  # noqa: F401

pytestmark = [pytest.mark.django_db]


def cleanup(*args: str) -> str:
    out = StringIO()
    call_command("pay10_cleanup_orphans", *args, stdout=out)
    return out.getvalue()


def missing_invoice_id() -> int:
    return Invoice.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000


@pytest.fixture
def orphans(broken_ledger):
    """One allocation to an invoice that is gone, one active allocation across tenants, and one
    reversed allocation whose credit is gone."""
    gone = Allocation.objects.create(
        tenant=broken_ledger.tenant, invoice_id=missing_invoice_id(), payment=broken_ledger.refunded_payment, amount_cents=100
    )
    other = TenantFactory(id="other", currency="USD")
    foreign_invoice = MigratedInvoiceFactory(tenant=other, amount_cents=1_000, status=InvoiceStatus.PARTIALLY_PAID)
    crossing = allocate(invoice=foreign_invoice, payment=broken_ledger.refunded_payment, amount=200)
    reversed_gone = Allocation.objects.create(
        tenant=broken_ledger.tenant, invoice=broken_ledger.invoice, credit_id=10**9, amount_cents=5
    )
    AllocationReversal.objects.create(allocation=reversed_gone, reason="released")
    return {"gone": gone, "crossing": crossing, "reversed_gone": reversed_gone, "foreign_invoice": foreign_invoice}


def test_nothing_to_clean_says_so_and_writes_nothing(ledger):
    audit_rows = PaymentAuditLog.objects.count()

    assert cleanup().strip() == NONE_FOUND
    assert PaymentAuditLog.objects.count() == audit_rows


def test_dry_run_lists_every_orphan_and_changes_nothing(orphans):
    allocations, reversals, audit_rows = Allocation.objects.count(), AllocationReversal.objects.count(), PaymentAuditLog.objects.count()

    out = cleanup("--dry-run")

    assert "Found 3 orphaned allocation(s):" in out
    assert f"allocation {orphans['gone'].pk} (acme): 100 cents from payment" in out
    assert "missing invoice -> would be deleted" in out
    assert "payment tenant differs from invoice tenant -> would be reversed" in out
    assert "missing credit -> would be deleted" in out
    assert out.splitlines()[-1] == "Dry run: nothing changed."
    assert (Allocation.objects.count(), AllocationReversal.objects.count(), PaymentAuditLog.objects.count()) == (
        allocations, reversals, audit_rows
    )
    assert not check_no_orphans().ok


def test_cleanup_deletes_rows_whose_target_is_gone_and_reverses_crossing_ones(orphans):
    out = cleanup()

    assert "Removed 3 orphaned allocation(s): 2 deleted" in out
    assert "1 reversed (tenant or currency mismatch); 1 invoice status(es) recomputed" in out
    assert not Allocation.objects.filter(pk__in=[orphans["gone"].pk, orphans["reversed_gone"].pk]).exists()
    assert not AllocationReversal.objects.filter(allocation_id=orphans["reversed_gone"].pk).exists()
    reversal = AllocationReversal.objects.get(allocation=orphans["crossing"])
    assert reversal.reason == ORPHAN_REVERSAL_REASON.format(reason="payment tenant differs from invoice tenant")
    assert check_no_orphans().ok


def test_cleanup_recomputes_the_status_of_an_invoice_that_lost_money(orphans):
    cleanup()

    assert Invoice.objects.get(pk=orphans["foreign_invoice"].pk).status == InvoiceStatus.ISSUED


def test_every_removed_orphan_has_an_audit_row_with_its_full_row_before(orphans):
    cleanup()

    rows = {row.allocation_id: row for row in PaymentAuditLog.objects.filter(event_type=AuditEvent.ORPHAN_REMOVED)}
    assert set(rows) == {orphans["gone"].pk, orphans["crossing"].pk, orphans["reversed_gone"].pk}
    gone = rows[orphans["gone"].pk]
    assert gone.tenant_id == "acme"
    assert gone.amount_cents == 100
    assert gone.after == {"action": "deleted"}
    assert gone.extra == {"reason": "missing invoice", "origin": {"osUser": os_user()}}
    assert gone.before["allocation"] == {
        "id": orphans["gone"].pk, "tenant_id": "acme", "invoice_id": orphans["gone"].invoice_id,
        "payment_id": orphans["gone"].payment_id, "credit_id": None, "amount_cents": 100, "backfilled": False,
        "created_by_id": None, "created_at": gone.before["allocation"]["created_at"],
    }
    assert gone.before["reversal"] is None
    assert rows[orphans["reversed_gone"].pk].before["reversal"]["reason"] == "released"
    assert rows[orphans["crossing"].pk].after == {"action": "reversed"}


def test_service_dry_run_returns_the_orphans_without_changing_anything(orphans):
    result = orphans_cleanup(dry_run=True)

    assert [orphan["id"] for orphan in result.orphans] == sorted(
        [orphans["gone"].pk, orphans["crossing"].pk, orphans["reversed_gone"].pk]
    )
    assert (result.deleted, result.reversed) == (0, 0)
    assert not check_no_orphans().ok


def _break_invoice_foreign_key(invoice_id: int) -> None:
    """Delete an invoice that allocations still reference, around the foreign keys, and commit."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                cursor.execute("DELETE FROM payments_invoicemigration WHERE invoice_id = %s", [invoice_id])
                cursor.execute("DELETE FROM billing_invoice WHERE id = %s", [invoice_id])
            finally:
                cursor.execute("SET session_replication_role = origin")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")  # only takes effect outside a transaction
            try:
                cursor.execute("DELETE FROM payments_invoicemigration WHERE invoice_id = %s", [invoice_id])
                cursor.execute("DELETE FROM billing_invoice WHERE id = %s", [invoice_id])
            finally:
                cursor.execute("PRAGMA foreign_keys = ON")


@pytest.mark.django_db(transaction=True)
def test_committed_orphan_from_a_broken_foreign_key_is_cleaned_up_and_commits():
    with transaction.atomic():
        ledger = consistent_ledger()
        doomed = MigratedInvoiceFactory(tenant=ledger.tenant, amount_cents=400, status=InvoiceStatus.PAID)
        orphan = allocate(invoice=doomed, payment=PaymentFactory(tenant=ledger.tenant, amount_cents=400), amount=400)
    _break_invoice_foreign_key(doomed.pk)
    assert not check_no_orphans().ok

    out = cleanup()

    assert "Removed 1 orphaned allocation(s): 1 deleted" in out
    assert not Allocation.objects.filter(pk=orphan.pk).exists()
    assert PaymentAuditLog.objects.get(event_type=AuditEvent.ORPHAN_REMOVED).before["allocation"]["invoice_id"] == doomed.pk
    assert check_no_orphans().ok
    assert not InvoiceMigration.objects.filter(invoice_id=doomed.pk).exists()
    assert Credit.objects.count() == 2  # nothing else touched
