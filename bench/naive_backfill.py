"""The naive baseline: the straightforward Django loop a first version would write.

Per invoice, in its own transaction: read its succeeded payments, map and save each, create an
allocation per payment up to the legacy paid figure, create a synthetic payment and allocation for
a shortfall, save the new status. Run on a sample; reports invoices/s and rows/s as measured.
Invoked by bench/backfill.py with DATABASE_URL pointing at a copy of the legacy data.
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")


def main(sample: int) -> None:
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from billing.models import Invoice
    from payments.domain.channels import channel_for_method, verification_status_for
    from payments.domain.status import invoice_status, legacy_paid_cents
    from payments.models import Allocation, Payment

    today = timezone.localdate()
    rows = 0
    started = time.perf_counter()
    invoices = Invoice.objects.order_by("id")[:sample]
    for invoice in invoices:
        with transaction.atomic():
            figure = legacy_paid_cents(
                status=invoice.status, amount_cents=invoice.amount_cents, amount_paid_cents=invoice.amount_paid_cents
            )
            remaining = figure
            payments = Payment.objects.filter(
                invoice=invoice, tenant_id=invoice.tenant_id, currency=invoice.currency, status="SUCCEEDED"
            )
            for payment in payments.order_by("received_at", "id"):
                payment.channel = channel_for_method(payment.method)
                payment.verification_status = verification_status_for(payment.status)
                payment.save()
                rows += 1
                amount = min(payment.amount_cents, remaining)
                if amount > 0:
                    Allocation.objects.create(
                        tenant_id=invoice.tenant_id, invoice=invoice, payment=payment, amount_cents=amount, backfilled=True
                    )
                    rows += 1
                    remaining -= amount
            if remaining > 0:
                synthetic = Payment.objects.create(
                    tenant_id=invoice.tenant_id, invoice=invoice, amount_cents=remaining, currency=invoice.currency,
                    method="legacy", status="SUCCEEDED", channel="LEGACY", verification_status="VERIFIED",
                    idempotency_key=f"pay10-backfill:{invoice.id}",
                    received_at=invoice.paid_at or invoice.issued_at or invoice.created_at,
                )
                Allocation.objects.create(
                    tenant_id=invoice.tenant_id, invoice=invoice, payment=synthetic, amount_cents=remaining, backfilled=True
                )
                rows += 2
            invoice.status = invoice_status(
                current_status=invoice.status, amount_cents=invoice.amount_cents, paid_cents=figure,
                due_date=invoice.due_date, today=today,
            )
            invoice.save()
            rows += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"invoices": sample, "rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
