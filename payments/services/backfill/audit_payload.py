"""The backfill's audit rows, built once for whichever writer stores them.

One `INVOICE_BACKFILLED` row per migrated invoice and one `PAYMENT_BACKFILLED` row per mapped
payment, each listing the allocations written for it. `audit_rows` returns them as tuples in
`AUDIT_COLUMNS` order, with `before`, `after` and `extra` as dicts: the ORM writer makes model
instances of them, the COPY writer sends the dicts as JSON text.
"""
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from payments.domain.backfill import InvoicePlan, PaymentPlan, PlannedCredit
from payments.services.backfill.common import AUDIT_ACTOR
from payments.services.origin import audit_origin

AUDIT_COLUMNS = (
    "tenant_id", "actor_label", "event_type", "event_time", "invoice_id", "payment_id", "credit_id",
    "amount_cents", "before", "after", "extra", "backfilled",
)
INVOICE_BACKFILLED = "INVOICE_BACKFILLED"
PAYMENT_BACKFILLED = "PAYMENT_BACKFILLED"


def audit_rows(
    *,
    invoice_plans: list[InvoicePlan],
    payment_plans: list[PaymentPlan],
    allocations: Iterable[tuple[int, int, int, int]],
    synthetic_ids: dict[int, int],
    credit_by_payment: dict[int, tuple[int, PlannedCredit]],
    run_id: int | None,
    now: datetime,
) -> list[tuple]:
    """The audit rows of a written batch.

    `allocations`: (id, invoice id, payment id, cents) of every allocation written; `synthetic_ids`:
    invoice id → its synthetic payment's id; `credit_by_payment`: payment id → (credit id, credit);
    `payment_plans`: every mapped payment of the batch (those of the invoices included).
    """
    by_invoice: dict[int, list[dict]] = defaultdict(list)
    by_payment: dict[int, list[dict]] = defaultdict(list)
    for allocation_id, invoice_id, payment_id, amount_cents in allocations:
        listed = {"allocationId": allocation_id, "invoiceId": invoice_id, "paymentId": payment_id, "amountCents": amount_cents}
        by_invoice[invoice_id].append(listed)
        by_payment[payment_id].append(listed)
    origin = audit_origin()

    def extra(plan) -> dict:
        return {"runId": run_id, "deviations": [d.kind for d in plan.deviations], "origin": origin}

    rows = []
    for plan in invoice_plans:
        invoice = plan.invoice
        synthetic_id = synthetic_ids.get(invoice.id)
        rows.append((
            invoice.tenant_id, AUDIT_ACTOR, INVOICE_BACKFILLED, now, invoice.id, synthetic_id, None,
            plan.legacy_paid_cents,
            {"status": invoice.status, "amountPaidCents": invoice.amount_paid_cents},
            {
                "status": plan.new_status,
                "paidCents": plan.legacy_paid_cents,
                "allocations": by_invoice[invoice.id],
                "syntheticPaymentId": synthetic_id,
                "syntheticPaymentCents": plan.synthetic.amount_cents if plan.synthetic else 0,
            },
            extra(plan),
            True,
        ))
    for plan in payment_plans:
        payment = plan.payment
        credit_id, credit = credit_by_payment.get(payment.id, (None, None))
        rows.append((
            payment.tenant_id, AUDIT_ACTOR, PAYMENT_BACKFILLED, now, payment.invoice_id, payment.id, credit_id,
            payment.amount_cents,
            {"status": payment.status, "method": payment.method},
            {
                "channel": plan.channel,
                "verificationStatus": plan.verification_status,
                "allocations": by_payment[payment.id],
                "credit": {"creditId": credit_id, "amountCents": credit.amount_cents, "reason": credit.reason}
                if credit
                else None,
            },
            extra(plan),
            True,
        ))
    return rows
