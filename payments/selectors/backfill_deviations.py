"""The backfill's deviations report (`pay10_backfill --report`): a read of what the runs recorded."""
from payments.models import BackfillDeviation

REPORT_FIELDS = ("kind", "tenant_id", "invoice_number", "invoice_id", "payment_id", "legacy", "new", "detail")


def backfill_deviations_report() -> list[dict]:
    """Every deviation recorded so far (all runs, every tenant), one machine-readable record each."""
    deviations = BackfillDeviation.objects.order_by("pk")
    return [
        {
            "kind": row["kind"],
            "tenant": row["tenant_id"],
            "invoiceNumber": row["invoice_number"],
            "invoiceId": row["invoice_id"],
            "paymentId": row["payment_id"],
            "legacy": row["legacy"],
            "new": row["new"],
            "detail": row["detail"],
        }
        for row in deviations.values(*REPORT_FIELDS).iterator(chunk_size=5000)
    ]
