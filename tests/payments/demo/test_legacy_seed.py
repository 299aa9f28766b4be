"""`pay10_seed_legacy`: deterministic legacy data with every status and anomaly, appended safely."""
import random
from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import Invoice, Tenant
from payments.demo import legacy_seed as legacy_seed_module
from payments.models import Payment

pytestmark = pytest.mark.django_db


def seed(*args) -> str:
    out = StringIO()
    call_command("pay10_seed_legacy", *args, stdout=out)
    return out.getvalue()


def invoice_rows(tenant_id: str) -> list[tuple]:
    return list(
        Invoice.objects.filter(tenant_id=tenant_id).order_by("number").values_list(
            "number", "amount_cents", "currency", "status", "amount_paid_cents", "issued_at", "due_date", "paid_at"
        )
    )


def test_seed_covers_every_status_and_anomaly():
    output = seed("--tenant", "rcme-dev", "--invoices", "400", "--seed", "1")
    assert "Seeded 400 invoices (INV-00000001..INV-00000400)" in output

    tenant = Tenant.objects.get(pk="rcme-dev")
    invoices = Invoice.objects.filter(tenant=tenant)
    payments = Payment.objects.filter(tenant=tenant)
    assert set(invoices.values_list("status", flat=True)) == {"DRAFT", "ISSUED", "PARTIALLY_PAID", "PAID", "OVERDUE", "VOID"}
    assert set(payments.values_list("status", flat=True)) == {"SUCCEEDED", "PENDING", "FAILED", "REFUNDED"}
    assert {" Card ", "bank-transfer", "Mobile_Money", "check", ""} <= set(payments.values_list("method", flat=True))
    assert invoices.filter(status="PAID", legacy_payments__isnull=True).exists()  # shortfall
    assert invoices.filter(status="PARTIALLY_PAID", amount_paid_cents=0).exists()
    assert invoices.filter(status="VOID", legacy_payments__status="SUCCEEDED").exists()
    assert invoices.filter(status="DRAFT", legacy_payments__status="SUCCEEDED").exists()
    assert invoices.filter(amount_cents=0).exists()
    assert payments.filter(invoice__isnull=True).exists()
    assert payments.exclude(invoice__tenant=tenant).filter(invoice__isnull=False).exists()  # cross-tenant
    assert Payment.objects.filter(tenant_id="rcme-dev-other", invoice__tenant=tenant).exists()
    assert payments.exclude(currency=tenant.currency).exists()
    assert Payment.objects.filter(channel__isnull=False).count() == 0  # legacy rows only


def test_seed_is_deterministic_and_appends_after_existing_numbers():
    seed("--tenant", "alpha", "--invoices", "40", "--seed", "5")
    first = invoice_rows("alpha")
    Payment.objects.all().delete()
    Invoice.objects.all().delete()
    seed("--tenant", "alpha", "--invoices", "40", "--seed", "5")
    assert invoice_rows("alpha") == first

    output = seed("--tenant", "alpha", "--invoices", "10", "--seed", "5")
    assert "INV-00000041..INV-00000050" in output
    assert Invoice.objects.filter(tenant_id="alpha").count() == 50


def test_seed_refuses_a_non_positive_count():
    with pytest.raises(CommandError, match="--invoices must be at least 1"):
        seed("--tenant", "alpha", "--invoices", "0")


def test_about_four_in_five_invoices_are_paid_or_part_paid():
    seed("--tenant", "rcme-dev", "--invoices", "1000", "--seed", "2")
    invoices = Invoice.objects.filter(tenant_id="rcme-dev")
    paid = invoices.filter(status__in=("PAID", "PARTIALLY_PAID")).count()
    assert 0.72 <= paid / invoices.count() <= 0.86


def test_the_smallest_seed_still_holds_every_anomaly():
    from payments.demo.legacy_seed import SCENARIOS

    seed("--tenant", "tiny", "--invoices", str(len(SCENARIOS)), "--seed", "9")
    invoices = Invoice.objects.filter(tenant_id="tiny")
    assert set(invoices.values_list("status", flat=True)) == {"DRAFT", "ISSUED", "PARTIALLY_PAID", "PAID", "OVERDUE", "VOID"}
    assert invoices.filter(status="PAID", legacy_payments__isnull=True).exists()
    assert invoices.filter(status="VOID", legacy_payments__isnull=False).exists()
    assert invoices.filter(status="DRAFT", legacy_payments__status="SUCCEEDED").exists()
    assert Payment.objects.filter(tenant_id="tiny").exclude(currency=Tenant.objects.get(pk="tiny").currency).exists()


def test_extra_money_shares_add_pending_payments_and_credit_money_and_leave_the_scenarios_alone():
    def generated(extra):
        generator = legacy_seed_module._Generator(
            tenant_id="rich", currency="KES", other_currency="USD", today=date(2026, 6, 15), rng=random.Random(5), extra=extra
        )
        return [generator.invoice(f"INV-{n}") for n in range(400)]

    plain, rich = generated(legacy_seed_module.ExtraMoney()), generated(legacy_seed_module.ExtraMoney(pending=0.5, credit=0.4))
    assert [row for row, _ in rich] == [row for row, _ in plain]  # the same invoices

    def count(rows, status):
        return sum(payment["status"] == status for _, payments in rows for payment in payments)

    assert 150 < count(rich, "PENDING") - count(plain, "PENDING") < 250
    assert 110 < count(rich, "SUCCEEDED") - count(plain, "SUCCEEDED") < 210


def test_seed_refuses_a_share_outside_zero_to_one():
    with pytest.raises(CommandError, match="--pending-share and --credit-share must be within 0..1"):
        seed("--tenant", "rcme-dev", "--invoices", "10", "--credit-share", "1.5")
