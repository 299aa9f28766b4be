"""What the read model's upkeep costs a payment operation: record a verified payment, then allocate
it to an unpaid invoice (two services, two commits), over `count` invoices, median per pair.
Invoked by bench/backfill.py with DATABASE_URL pointing at a backfilled data set; prints JSON with
the latencies and the invoice ids it paid (so the caller can refresh their figures afterwards)."""
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")


def main(tenant_id: str, count: int) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from billing.models import Tenant
    from payments.models import Channel, FiguresState, InvoiceFigures
    from payments.services.lookups import ALL_TENANTS
    from payments.services.allocations import allocation_create
    from payments.services.payments import payment_record

    tenant = Tenant.objects.get(pk=tenant_id)
    actor, _created = get_user_model().objects.get_or_create(username="bench-writer", defaults={"is_staff": True})
    # Nothing paid or pending yet (the read model says so; it is exact after the build).
    unpaid = (
        InvoiceFigures.objects.filter(tenant=tenant, state=FiguresState.UNPAID, pending_cents=0)
        .order_by("-invoice_id")
        .values_list("invoice_id", "amount_cents")[:count]
    )
    samples, paid = [], []
    for invoice_id, amount in unpaid:
        started = time.perf_counter()
        payment, _created = payment_record(
            tenant=tenant, amount_cents=amount, currency=tenant.currency, channel=Channel.BANK_TRANSFER,
            verification_status="VERIFIED", actor=actor,
        )
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice_id, amount_cents=amount, actor=actor)
        samples.append(time.perf_counter() - started)
        paid.append(invoice_id)
    print(json.dumps({"operations": len(samples), "median_ms": statistics.median(samples) * 1000, "invoice_ids": paid}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
