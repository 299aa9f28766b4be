"""`manage.py pay10_verify`: lines with ✓/✗, --json, exit status, and the --baseline comparison.

Tests that break the ledger on purpose use `broken_ledger` (see tests/payments/ledgers.py:
the test transaction is rolled back without Django's end-of-test constraint check).
"""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.models import Invoice, InvoiceStatus
from payments.management.commands import pay10_verify
from payments.models import (
    Allocation,
    AuditEvent,
    BackfillDeviation,
    Credit,
    InvoiceMigration,
    LegacyPaymentStatus,
    Payment,
    PaymentMigration,
)
from payments.selectors import verification
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import LegacyPaymentFactory
from tests.payments.ledgers import (  # noqa: F401 (fixtures)
    TODAY,
    allocate,
    audit,
    broken_ledger,
    ledger,
    recorded_payment,
)

pytestmark = [pytest.mark.django_db]


def verify(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("pay10_verify", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def baseline(tmp_path, *args: str) -> str:
    path = tmp_path / "baseline.json"
    call_command("pay10_baseline", "--out", str(path), *args, stdout=StringIO())
    return str(path)


def test_verify_passes_on_a_consistent_ledger_with_a_tick_per_check(ledger):
    out, error = verify()

    assert error is None
    lines = out.splitlines()
    assert lines[-1] == pay10_verify.VERIFY_PASSED.format(count=11)
    assert f"✓ payments_within_amount: {verification.PAYMENTS_OK}" in lines
    assert not any(line.startswith("✗") for line in lines)


def test_verify_fails_with_a_cross_explanation_examples_and_exit_status_1(broken_ledger):
    allocate(invoice=broken_ledger.invoice, payment=broken_ledger.payment, amount=500)

    out, error = verify()

    assert error is not None and error.returncode == 1
    assert str(error) == pay10_verify.VERIFY_FAILED.format(count=1, names="payments_within_amount")
    assert f"✗ payments_within_amount: {verification.PAYMENTS_OVER_APPLIED.format(count=1)}" in out
    assert f'"id": {broken_ledger.payment.pk}' in out


def test_verify_json_prints_one_document_with_every_check(broken_ledger):
    Invoice.objects.filter(pk=broken_ledger.invoice.pk).update(status=InvoiceStatus.PAID)

    out, error = verify("--json")

    assert error is not None and error.returncode == 1
    document = json.loads(out)
    assert document["ok"] is False
    by_name = {check["name"]: check for check in document["checks"]}
    assert set(by_name["stored_status_matches_engine"]) == {"name", "ok", "count", "examples", "explanation"}
    assert by_name["stored_status_matches_engine"]["ok"] is False
    assert by_name["stored_status_matches_engine"]["count"] == 1
    assert by_name["payments_within_amount"]["ok"] is True


def test_verify_json_ok_document_exits_zero(ledger):
    out, error = verify("--json")

    assert error is None
    assert json.loads(out)["ok"] is True


def test_unmigrated_invoice_fails_unless_allow_partial(broken_ledger):
    InvoiceFactory(tenant=broken_ledger.tenant)

    assert verify()[1] is not None
    out, error = verify("--allow-partial")
    assert error is None
    assert verification.MIGRATION_PARTIAL_ALLOWED.format(invoices=1, payments=0) in out


def test_verify_of_one_tenant_ignores_another_tenants_breakage(broken_ledger):
    other = TenantFactory(id="other", currency="USD")
    InvoiceFactory(tenant=other)

    assert verify("--tenant", "acme")[1] is None
    assert verify("--tenant", "other")[1] is not None


def test_unknown_tenant_is_a_one_line_error(ledger):
    _out, error = verify("--tenant", "nobody")

    assert str(error) == "unknown tenant 'nobody'"


def test_unreadable_or_foreign_baseline_is_a_one_line_error(ledger, tmp_path):
    missing = tmp_path / "missing.json"
    assert str(verify("--baseline", str(missing))[1]).startswith(f"cannot read the baseline {missing}: ")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "invalid JSON" in str(verify("--baseline", str(garbage))[1])
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"kind": "something else"}')
    assert str(verify("--baseline", str(foreign))[1]) == pay10_verify.BASELINE_INVALID.format(path=foreign)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"kind": "pay10-baseline", "asOf": "2026-11-26"}')
    assert str(verify("--baseline", str(truncated))[1]) == pay10_verify.BASELINE_INVALID.format(path=truncated)


def test_baseline_of_one_tenant_refuses_verify_of_another_scope(ledger, tmp_path):
    TenantFactory(id="other", currency="USD")
    path = baseline(tmp_path, "--tenant", "acme")

    _out, error = verify("--baseline", path, "--tenant", "other")

    assert str(error) == pay10_verify.BASELINE_OTHER_SCOPE.format(baseline_scope="tenant acme", scope="tenant other")
    assert verify("--baseline", path)[1] is None  # the baseline's own tenant by default


def test_baseline_taken_now_compares_equal(ledger, tmp_path):
    out, error = verify("--baseline", baseline(tmp_path))

    assert error is None
    assert f"✓ baseline_fin01_totals: {verification.FIN01_OK.format(as_of=TODAY)}" in out
    assert "✓ baseline_fin02_rows" in out


def test_money_changed_after_the_baseline_fails_fin01_and_fin02(broken_ledger, tmp_path):
    path = baseline(tmp_path)
    allocate(invoice=broken_ledger.invoice, payment=recorded_payment(broken_ledger.tenant, 6_000), amount=4_000)

    out, error = verify("--baseline", path, "--json")

    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    assert failed == ["baseline_fin01_totals", "baseline_fin02_rows"]
    assert {"field": "USD.collectedCents", "before": 8_000, "after": 12_000} in checks["baseline_fin01_totals"]["examples"]
    assert checks["baseline_fin02_rows"]["examples"] == [
        {"tenant": "acme", "number": broken_ledger.invoice.number, "problem": "paid 4000 -> 8000; balance 4000 -> 0"}
    ]
    assert error.returncode == 1


def test_stored_status_changed_after_the_baseline_fails_status_counts(broken_ledger, tmp_path):
    path = baseline(tmp_path)
    Invoice.objects.filter(pk=broken_ledger.invoice.pk).update(status=InvoiceStatus.ISSUED)

    out, _error = verify("--baseline", path, "--json")

    check = {check["name"]: check for check in json.loads(out)["checks"]}["baseline_status_counts"]
    assert check["ok"] is False
    assert {"tenant": "acme", "field": "byStoredStatus.ISSUED.count", "before": 0, "after": 1} in check["examples"]


@pytest.fixture
def legacy_books(ledger):
    """Before the backfill: an unmigrated ISSUED invoice with 400 paid the legacy way, its legacy
    payment, and an unlinked legacy payment of 300."""
    invoice = InvoiceFactory(
        tenant=ledger.tenant, amount_cents=1_000, amount_paid_cents=400, status=InvoiceStatus.ISSUED,
        due_date=TODAY + timedelta(days=5),
    )
    payment = LegacyPaymentFactory(tenant=ledger.tenant, invoice=invoice, amount_cents=400)
    unlinked = LegacyPaymentFactory(tenant=ledger.tenant, amount_cents=300)
    return invoice, payment, unlinked


def backfill_by_hand(invoice, payment, unlinked, *, record_status_change: bool = True) -> None:
    """What the backfill does for `legacy_books`, written directly."""
    tenant = invoice.tenant
    InvoiceMigration.objects.create(
        invoice=invoice, legacy_status=InvoiceStatus.ISSUED, legacy_amount_paid_cents=400, legacy_paid_cents=400
    )
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PARTIALLY_PAID)
    audit(tenant, AuditEvent.INVOICE_BACKFILLED, invoice_id=invoice.pk, backfilled=True)
    if record_status_change:
        BackfillDeviation.objects.create(
            kind=BackfillDeviation.Kind.STATUS_CHANGED, tenant=tenant, invoice=invoice, invoice_number=invoice.number
        )
    for legacy in (payment, unlinked):
        Payment.objects.filter(pk=legacy.pk).update(channel="CARD", verification_status="VERIFIED")
        PaymentMigration.objects.create(payment=legacy)
        audit(tenant, AuditEvent.PAYMENT_BACKFILLED, payment_id=legacy.pk, backfilled=True)
    Allocation.objects.create(tenant=tenant, invoice=invoice, payment=payment, amount_cents=400, backfilled=True)
    Credit.objects.create(
        tenant=tenant, currency="USD", amount_cents=300, source_payment=unlinked, reason="PAY-10 backfill: unlinked payment",
        backfilled=True,
    )


def test_backfill_after_baseline_passes_with_its_credit_and_status_changes_explained(legacy_books, tmp_path):
    path = baseline(tmp_path)
    backfill_by_hand(*legacy_books)

    out, error = verify("--baseline", path)

    assert error is None, out
    assert (
        "✓ baseline_unapplied_credit: "
        + verification.CREDIT_OK.format(by_reason="; USD 300 unapplied of 300 in 1 credit(s): PAY-10 backfill: unlinked payment")
        in out
    )
    assert f"✓ baseline_status_counts: {verification.STATUS_COUNTS_OK.format(moved=1)}" in out


def test_status_change_without_a_deviation_is_unexplained(legacy_books, tmp_path):
    path = baseline(tmp_path)
    backfill_by_hand(*legacy_books, record_status_change=False)

    out, error = verify("--baseline", path, "--json")

    check = {check["name"]: check for check in json.loads(out)["checks"]}["baseline_status_counts"]
    assert check["ok"] is False
    # ISSUED and PARTIALLY_PAID each differ in count and amount, and one invoice changed without a deviation
    assert check["explanation"] == verification.STATUS_COUNTS_DIFFERENT.format(count=5, unexplained=1)
    assert {"tenant": "acme", "field": "byStoredStatus.PARTIALLY_PAID.count", "before": 1, "after": 2} in check["examples"]
    assert check["examples"][-1]["kind"] == "status change without deviation"
    assert error is not None


def test_credit_not_created_by_the_backfill_is_unexplained_growth(broken_ledger, tmp_path):
    path = baseline(tmp_path)
    credit = Credit.objects.create(
        tenant=broken_ledger.tenant, currency="USD", amount_cents=50, source_payment=broken_ledger.refunded_payment, reason="x"
    )
    audit(broken_ledger.tenant, AuditEvent.CREDIT_ISSUED, credit_id=credit.pk)

    out, error = verify("--baseline", path, "--json")

    check = {check["name"]: check for check in json.loads(out)["checks"]}["baseline_unapplied_credit"]
    assert check["ok"] is False
    assert check["examples"][0] == {
        "currency": "USD", "before": 1_000 - 1_000 + 700, "after": 750, "backfillCreditCents": 0, "unexplainedCents": 50
    }
    assert error is not None


@pytest.mark.parametrize(("mapped_to", "holds"), [("PENDING", True), ("REJECTED", False)])
def test_legacy_pending_payment_must_stay_pending_verification(legacy_books, tmp_path, mapped_to, holds):
    invoice, _payment, _unlinked = legacy_books
    pending = LegacyPaymentFactory(tenant=invoice.tenant, invoice=invoice, amount_cents=250, status=LegacyPaymentStatus.PENDING)
    path = baseline(tmp_path)
    backfill_by_hand(*legacy_books)
    Payment.objects.filter(pk=pending.pk).update(channel="CARD", verification_status=mapped_to)
    PaymentMigration.objects.create(payment=pending)
    audit(invoice.tenant, AuditEvent.PAYMENT_BACKFILLED, payment_id=pending.pk, backfilled=True)

    out, error = verify("--baseline", path, "--json")

    assert (error is None) is holds
    fin01 = {check["name"]: check for check in json.loads(out)["checks"]}["baseline_fin01_totals"]
    if not holds:
        assert fin01["examples"] == [{"field": "USD.pendingVerificationCents", "before": 2_250, "after": 2_000}]
