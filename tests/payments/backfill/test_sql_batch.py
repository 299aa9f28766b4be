"""The backfill planned and written in SQL (PostgreSQL's path, `sql_batch`) writes exactly the rows
of the Python planner's path (SQLite's, forced here on PostgreSQL), on the same legacy data: every
deviation kind, detached payments of an invoice migrated before, migrate-on-first-write, refusals."""
from datetime import UTC, datetime

import pytest
from django.db import transaction

from billing.models import Invoice
from payments.demo.legacy_seed import legacy_seed
from payments.domain.backfill import DEVIATION_KINDS
from payments.models import BackfillDeviation, InvoiceMigration, Payment
from payments.services import backfill
from payments.services.backfill import batch as backfill_batch
from tests.payments.backfill.helpers import audit_state, money_state

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.pay10_regression]

TENANT = "rcme-dev"
INVOICES = 90
BATCH = 17


LATER = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER_ID = 10_000_000  # explicit ids: the rows are made twice, once in a rolled-back transaction


def later_legacy_payments() -> None:
    """Legacy rows recorded after a first run: payments on an invoice it migrated (succeeded,
    pending, in another currency), an unlinked one, and a new PAID invoice with a short payment."""
    invoice = Invoice.objects.filter(tenant_id=TENANT, pk__in=InvoiceMigration.objects.values("invoice_id")).order_by("pk").first()
    rows = [(invoice.pk, "SUCCEEDED", invoice.currency, "Wire"), (invoice.pk, "PENDING", invoice.currency, "m-pesa"),
            (invoice.pk, "SUCCEEDED", "XXX", "cash"), (None, "SUCCEEDED", invoice.currency, "")]
    new = Invoice.objects.create(
        pk=LATER_ID, tenant_id=TENANT, number="INV-LATER", amount_cents=5000, currency=invoice.currency,
        status="PAID", amount_paid_cents=5000, issued_at=LATER, paid_at=LATER, created_at=LATER, updated_at=LATER,
    )
    rows.append((new.pk, "SUCCEEDED", invoice.currency, "card"))
    for n, (invoice_id, status, currency, method) in enumerate(rows):
        Payment.objects.create(pk=LATER_ID + n, tenant_id=TENANT, invoice_id=invoice_id, amount_cents=1234,
                               currency=currency, method=method, status=status, received_at=LATER, created_at=LATER)


def two_runs() -> tuple:
    """Two runs with legacy payments recorded between them; the rows written and the summaries."""
    first = backfill.backfill_run(batch_size=BATCH)
    later_legacy_payments()
    second = backfill.backfill_run(batch_size=BATCH)
    return money_state(), audit_state(), first.counts, second.counts


class Undo(Exception):
    pass


def undone(step):
    """`step()`'s answer, every row it wrote rolled back (sequences aside)."""
    answer = []
    try:
        with transaction.atomic():
            answer.append(step())
            raise Undo
    except Undo:
        pass
    return answer[0]


def test_sql_path_writes_the_python_paths_rows(monkeypatch):
    legacy_seed(tenant_id=TENANT, invoices=INVOICES, seed=3)

    def in_sql():
        state = two_runs()
        assert set(BackfillDeviation.objects.values_list("kind", flat=True)) == set(DEVIATION_KINDS)
        assert BackfillDeviation.objects.filter(detail__contains="migrated before it").exists()
        return state

    by_sql = undone(in_sql)
    monkeypatch.setattr(backfill_batch, "planned_in_sql", lambda using: False)
    assert two_runs() == by_sql


def test_first_write_migrates_one_invoice_like_a_run(monkeypatch):
    legacy_seed(tenant_id=TENANT, invoices=30, seed=4)
    invoice_ids = list(Invoice.objects.filter(tenant_id=TENANT).order_by("pk").values_list("pk", flat=True)[:25])
    payment_ids = list(Payment.objects.filter(invoice__isnull=True).order_by("pk").values_list("pk", flat=True))

    def first_writes():
        with transaction.atomic():
            for invoice_id in invoice_ids:
                backfill.invoice_migrate_if_needed(invoice_id=invoice_id)
            for payment_id in payment_ids:
                backfill.payment_migrate_if_needed(payment_id=payment_id)
        return money_state(), audit_state()

    by_sql = undone(first_writes)
    monkeypatch.setattr(backfill_batch, "planned_in_sql", lambda using: False)
    by_python = first_writes()
    assert InvoiceMigration.objects.count() == 25
    assert by_python == by_sql


def test_key_collision_refuses_the_batch_before_writing_anything():
    legacy_seed(tenant_id=TENANT, invoices=30, seed=2)
    shortfall = next(
        plan for plan in Invoice.objects.filter(tenant_id=TENANT, status="PAID").order_by("pk")
        if not Payment.objects.filter(invoice=plan, status="SUCCEEDED").exists()
    )
    Payment.objects.create(tenant_id=TENANT, amount_cents=1, currency=shortfall.currency, status="PENDING",
                           idempotency_key=f"pay10-backfill:{shortfall.pk}", channel="CARD",
                           verification_status="PENDING")
    with pytest.raises(backfill.BackfillError, match=f"which the backfill needs for invoice {shortfall.pk}'s"):
        backfill.backfill_run(batch_size=1000)
    assert not InvoiceMigration.objects.exists()
    assert not Payment.objects.filter(channel="LEGACY").exists()
