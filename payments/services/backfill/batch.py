"""One batch, the unit of every backfill path (a run's batches and the migrate-on-first-write of the
services alike). On PostgreSQL planned and written in SQL (`sql_batch`); elsewhere read and lock
(`readers`), plan (`payments.domain.backfill`), write (`writer`); the same rows either way (a test
compares them). Runs in the caller's transaction; locks invoices, then payments, each ascending.
"""
from collections import defaultdict
from collections.abc import Iterable
from datetime import date

from django.db import connections
from django.db.models import Exists, F, OuterRef

from payments.domain import backfill as plan_rules
from payments.domain.backfill import LegacyPayment
from payments.services.backfill import sql_batch
from payments.services.backfill.common import BackfillModels, BatchResult
from payments.services.backfill.readers import locked_invoice_batch, locked_payments
from payments.services.backfill.writer import BatchPlan, write_batch


def planned_in_sql(using: str) -> bool:
    """Whether a batch on this database is planned and written in SQL (PostgreSQL)."""
    return connections[using].vendor == "postgresql"


def invoices_migrate(
    m: BackfillModels, *, using: str, invoice_ids: Iterable[int], run_id: int | None, today: date, batch_number: int = 0
) -> BatchResult:
    """Migrate these invoices (those not migrated yet) and their legacy payments of the same tenant."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return BatchResult()
    if planned_in_sql(using):
        return sql_batch.invoices_migrate(
            m, using=using, ids=ids, run_id=run_id, today=today, batch_number=batch_number
        )
    invoices, updated_at, legacy_payments = locked_invoice_batch(m, using, ids)
    if not invoices:
        return BatchResult()
    payments_by_invoice: dict[int, list[LegacyPayment]] = defaultdict(list)
    for payment in legacy_payments:
        payments_by_invoice[payment.invoice_id].append(payment)
    plans = [
        plan_rules.plan_invoice(invoice=invoice, payments=payments_by_invoice[invoice.id], today=today)
        for invoice in invoices.values()
    ]
    return write_batch(
        m, plan=BatchPlan(invoice_plans=plans, legacy_updated_at=updated_at), using=using, run_id=run_id,
        batch_number=batch_number,
    )


def detached_payments_migrate(
    m: BackfillModels, *, using: str, payment_ids: Iterable[int], run_id: int | None, today: date, batch_number: int = 0
) -> BatchResult:
    """Migrate these legacy payments: those linked to an unmigrated invoice of their own tenant go
    with that invoice (locked first); the rest are planned alone."""
    ids = sorted(set(payment_ids))
    result = BatchResult()
    if not ids:
        return result
    with_own_invoice = (
        m.legacy_payments(using)
        .filter(pk__in=ids, tenant_id=F("invoice__tenant_id"))
        .filter(Exists(m.unmigrated_invoices(using).filter(pk=OuterRef("invoice_id"))))
        .values_list("invoice_id", flat=True)
    )
    result.add(
        invoices_migrate(
            m, using=using, invoice_ids=set(with_own_invoice), run_id=run_id, today=today, batch_number=batch_number
        )
    )
    if planned_in_sql(using):
        result.add(sql_batch.payments_migrate(m, using=using, ids=ids, run_id=run_id, batch_number=batch_number))
        return result
    legacy_payments = locked_payments(m, using, payment_ids=ids)
    if not legacy_payments:
        return result
    linked = {payment.invoice_id for payment in legacy_payments if payment.invoice_id is not None}
    migrated_invoices = set(
        m.InvoiceMigration.objects.using(using).filter(invoice_id__in=linked).values_list("invoice_id", flat=True)
    )
    plans = []
    for payment in legacy_payments:
        same_tenant_link = payment.invoice_id is not None and payment.invoice_tenant_id == payment.tenant_id
        if same_tenant_link and payment.invoice_id not in migrated_invoices:
            continue  # its invoice is locked by another writer's transaction; it takes the payment
        plans.append(plan_rules.plan_detached_payment(payment=payment, invoice_migrated=same_tenant_link))
    result.add(
        write_batch(m, plan=BatchPlan(payment_plans=plans), using=using, run_id=run_id, batch_number=batch_number)
    )
    return result
