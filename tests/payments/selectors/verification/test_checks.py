"""`payments.selectors.verification`: a consistent ledger passes every check; breaking one invariant
at a time (direct writes that bypass the services) fails exactly that check, with an explanation.

The ledgers and the `broken_ledger` fixture are in `tests/payments/ledgers.py` (read its docstring for
why breaking writes inside the test transaction are never checked).
"""
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import Invoice, InvoiceStatus
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    Channel,
    Credit,
    InvoiceMigration,
    LegacyPaymentStatus,
    Payment,
    Refund,
    VerificationStatus,
)
from payments.selectors import verification
from payments.selectors.verification import CheckResult, invariant_checks
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import LegacyPaymentFactory, MigratedInvoiceFactory, PaymentFactory
from tests.payments.ledgers import (  # noqa: F401 (fixtures)
    TODAY,
    allocate,
    audit,
    backfilled_invoice,
    broken_ledger,
    ledger,
    mapped_legacy_payment,
    recorded_payment,
)

pytestmark = [pytest.mark.django_db]

def checks_by_name(**kwargs) -> dict[str, CheckResult]:
    return {check.name: check for check in invariant_checks(today=TODAY, **kwargs)}


def failing(**kwargs) -> dict[str, CheckResult]:
    return {name: check for name, check in checks_by_name(**kwargs).items() if not check.ok}


def test_consistent_ledger_passes_every_check(ledger):
    checks = checks_by_name()
    assert [name for name, check in checks.items() if not check.ok] == []
    assert checks["payments_within_amount"].explanation == verification.PAYMENTS_OK
    assert checks["audit_trail_complete"].count == 0


def test_checks_scoped_to_a_tenant_ignore_other_tenants(broken_ledger):
    other = TenantFactory(id="other", currency="USD")
    over = PaymentFactory(tenant=other, amount_cents=100)
    invoice = MigratedInvoiceFactory(tenant=other, amount_cents=1_000, status=InvoiceStatus.PARTIALLY_PAID)
    allocate(invoice=invoice, payment=over, amount=500)

    assert "payments_within_amount" in failing()
    assert "payments_within_amount" not in failing(tenant=broken_ledger.tenant)
    assert "payments_within_amount" in failing(tenant=other)


# Invariant 1 -------------------------------------------------------------------------------------
def test_payment_allocated_beyond_its_amount_fails_payments_check(broken_ledger):
    allocate(invoice=broken_ledger.invoice, payment=broken_ledger.payment, amount=500)

    failed = failing()
    assert list(failed) == ["payments_within_amount"]
    check = failed["payments_within_amount"]
    assert check.explanation == verification.PAYMENTS_OVER_APPLIED.format(count=1)
    assert check.examples == [
        {
            "id": broken_ledger.payment.pk, "tenant_id": "acme", "amount_cents": 5_000, "allocated_cents": 4_500,
            "credited_cents": 1_000, "refunded_cents": 0, "unallocated_cents": -500,
        }
    ]


def test_refund_beyond_unallocated_money_fails_payments_check(broken_ledger):
    Refund.objects.create(tenant=broken_ledger.tenant, payment=broken_ledger.refunded_payment, amount_cents=600)
    audit(broken_ledger.tenant, AuditEvent.PAYMENT_REFUNDED, payment_id=broken_ledger.refunded_payment.pk)

    assert list(failing()) == ["payments_within_amount"]


# Invariant 2 -------------------------------------------------------------------------------------
def test_credit_applied_beyond_its_amount_fails_credits_check(broken_ledger):
    allocate(invoice=broken_ledger.invoice, credit=broken_ledger.credit, amount=250)

    failed = failing()
    assert list(failed) == ["credits_within_amount"]
    assert failed["credits_within_amount"].explanation == verification.CREDITS_OVER_APPLIED.format(count=1)
    assert failed["credits_within_amount"].examples[0]["remaining_cents"] == -250


# Invariant 3 -------------------------------------------------------------------------------------
def test_verified_money_beyond_invoice_amount_fails_invoices_check(broken_ledger):
    invoice = broken_ledger.invoice
    allocate(invoice=invoice, payment=recorded_payment(broken_ledger.tenant, 7_000), amount=7_000)
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PAID)  # keep the stored status current

    failed = failing()
    assert list(failed) == ["invoices_within_amount"]
    check = failed["invoices_within_amount"]
    assert check.explanation == verification.INVOICES_OVER_APPLIED.format(count=1, over_paid=1)
    assert check.examples[0]["paid_cents"] == 11_000
    assert check.examples[0]["balance_cents"] == -3_000


def test_pending_money_beyond_balance_fails_invoices_check(broken_ledger):
    pending = recorded_payment(
        broken_ledger.tenant, 5_000, verification_status=VerificationStatus.PENDING, status=LegacyPaymentStatus.PENDING
    )
    allocate(invoice=broken_ledger.invoice, payment=pending, amount=5_000)

    failed = failing()
    assert list(failed) == ["invoices_within_amount"]
    assert failed["invoices_within_amount"].explanation == verification.INVOICES_OVER_APPLIED.format(count=1, over_paid=0)


# Invariant 4 -------------------------------------------------------------------------------------
def test_allocation_to_a_missing_invoice_fails_orphan_check(broken_ledger):
    missing_invoice_id = Invoice.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
    # the foreign key is checked at commit (deferred), which this test transaction never reaches
    orphan = Allocation.objects.create(
        tenant=broken_ledger.tenant, invoice_id=missing_invoice_id, payment=broken_ledger.refunded_payment, amount_cents=1
    )
    audit(broken_ledger.tenant, AuditEvent.ALLOCATION_CREATED, allocation_id=orphan.pk)

    failed = failing()
    assert list(failed) == ["no_orphan_allocations"]
    check = failed["no_orphan_allocations"]
    assert check.explanation == verification.ORPHANS_FOUND.format(count=1, missing=1, crossing=0)
    assert check.examples[0]["id"] == orphan.pk
    assert check.examples[0]["reason"] == "missing invoice"


def test_allocation_across_tenants_fails_orphan_check(broken_ledger):
    other = TenantFactory(id="other", currency="USD")
    foreign_invoice = MigratedInvoiceFactory(tenant=other, amount_cents=1_000, status=InvoiceStatus.ISSUED)
    crossing = Allocation.objects.create(
        tenant=other, invoice=foreign_invoice, payment=broken_ledger.refunded_payment, amount_cents=100
    )
    audit(other, AuditEvent.ALLOCATION_CREATED, allocation_id=crossing.pk)
    Invoice.objects.filter(pk=foreign_invoice.pk).update(status=InvoiceStatus.PARTIALLY_PAID)

    failed = failing()
    assert list(failed) == ["no_orphan_allocations"]
    assert failed["no_orphan_allocations"].explanation == verification.ORPHANS_FOUND.format(count=1, missing=0, crossing=1)
    assert failed["no_orphan_allocations"].examples[0]["reason"] == "payment tenant differs from invoice tenant"
    assert "no_orphan_allocations" in failing(tenant=other)


def test_allocation_across_currencies_fails_orphan_check(broken_ledger):
    euro_payment = recorded_payment(broken_ledger.tenant, 100, currency="EUR")
    allocate(invoice=broken_ledger.invoice, payment=euro_payment, amount=100)

    failed = failing()
    assert "no_orphan_allocations" in failed
    assert failed["no_orphan_allocations"].examples[0]["reason"] == "payment currency differs from invoice currency"


def test_reversed_cross_tenant_allocation_is_history_not_an_orphan(broken_ledger):
    other = TenantFactory(id="other", currency="USD")
    foreign_invoice = MigratedInvoiceFactory(tenant=other, amount_cents=1_000, status=InvoiceStatus.ISSUED)
    crossing = allocate(invoice=foreign_invoice, payment=broken_ledger.refunded_payment, amount=100)
    AllocationReversal.objects.create(allocation=crossing, reason="cleanup")
    audit(other, AuditEvent.ORPHAN_REMOVED, allocation_id=crossing.pk)

    assert failing() == {}


# Invariant 5 -------------------------------------------------------------------------------------
def test_stored_status_disagreeing_with_money_fails_status_check(broken_ledger):
    Invoice.objects.filter(pk=broken_ledger.invoice.pk).update(status=InvoiceStatus.PAID)

    failed = failing()
    assert list(failed) == ["stored_status_matches_engine"]
    check = failed["stored_status_matches_engine"]
    assert check.explanation == verification.STATUSES_WRONG.format(count=1, today=TODAY, by_date=0)
    assert check.examples[0]["status"] == "PAID"
    assert check.examples[0]["status_today"] == "PARTIALLY_PAID"


def test_status_stale_only_because_days_passed_tells_operator_to_refresh(broken_ledger):
    Invoice.objects.filter(pk=broken_ledger.invoice.pk).update(due_date=TODAY - timedelta(days=1))

    failed = failing()
    assert list(failed) == ["stored_status_matches_engine"]
    assert failed["stored_status_matches_engine"].explanation == verification.STATUSES_STALE_BY_DATE.format(
        count=1, today=TODAY
    )
    assert "pay10_refresh_statuses" in verification.STATUSES_STALE_BY_DATE


def test_unmigrated_invoice_keeps_its_legacy_status_unchecked(broken_ledger):
    InvoiceFactory(tenant=broken_ledger.tenant, status=InvoiceStatus.PAID, amount_paid_cents=0)

    assert "stored_status_matches_engine" not in failing(allow_partial=True)


# Invariant 6 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind",
    ["allocation", "reversal", "credit", "refunded payment", "PAY-10 payment", "synthetic payment"],
)
def test_money_row_without_its_audit_row_fails_audit_check(broken_ledger, kind):
    tenant = broken_ledger.tenant
    if kind == "allocation":
        Allocation.objects.create(tenant=tenant, invoice=broken_ledger.invoice, payment=broken_ledger.refunded_payment, amount_cents=1)
        Invoice.objects.filter(pk=broken_ledger.invoice.pk).update(status=InvoiceStatus.PARTIALLY_PAID)
    elif kind == "reversal":
        AllocationReversal.objects.create(allocation=broken_ledger.credit.applications.get(), reason="unaudited")
        Invoice.objects.filter(pk=broken_ledger.credit_invoice.pk).update(status=InvoiceStatus.ISSUED)
    elif kind == "credit":
        Credit.objects.create(tenant=tenant, currency="USD", amount_cents=100, source_payment=broken_ledger.refunded_payment, reason="x")
    elif kind == "refunded payment":
        Refund.objects.create(tenant=tenant, payment=broken_ledger.refunded_payment, amount_cents=100)
    elif kind == "PAY-10 payment":
        PaymentFactory(tenant=tenant, amount_cents=100)
    else:
        invoice = backfilled_invoice(tenant, legacy_status="PAID", status="PAID", legacy_paid=0, amount_cents=0)
        Payment.objects.create(
            tenant=tenant, amount_cents=100, currency="USD", channel=Channel.LEGACY, verification_status="VERIFIED",
            idempotency_key=f"pay10-backfill:{invoice.pk + 1000}",
        )

    failed = failing()
    assert list(failed) == ["audit_trail_complete"]
    check = failed["audit_trail_complete"]
    assert check.explanation == verification.AUDIT_MISSING.format(count=1, by_kind=f"1 {kind}(s)")
    assert check.examples[0]["kind"] == kind


def test_backfilled_allocation_needs_a_backfill_audit_row_of_its_invoice(broken_ledger):
    assert not any(queryset.exists() for queryset in verification.unaudited_rows()["allocation"])
    unaudited_invoice = MigratedInvoiceFactory(tenant=broken_ledger.tenant, amount_cents=100, status=InvoiceStatus.PAID)
    Allocation.objects.create(
        tenant=broken_ledger.tenant, invoice=unaudited_invoice, payment=broken_ledger.refunded_payment, amount_cents=100,
        backfilled=True,
    )

    check = failing()["audit_trail_complete"]
    assert check.explanation == verification.AUDIT_MISSING.format(count=1, by_kind="1 allocation(s)")


# Invariant 7 -------------------------------------------------------------------------------------
def test_legacy_paid_figure_not_allocated_fails_conservation(broken_ledger):
    InvoiceMigration.objects.filter(invoice=broken_ledger.legacy_invoice).update(legacy_paid_cents=3_500)

    failed = failing()
    assert list(failed) == ["backfill_conserves_money"]
    check = failed["backfill_conserves_money"]
    assert check.explanation == verification.CONSERVATION_BROKEN.format(
        tenants=1, totals="acme: legacy 3500 vs allocated 3000", invoices=1, payments=0
    )
    assert check.examples[0] == {
        "kind": "tenant", "tenant_id": "acme", "legacy_paid_cents": 3_500, "backfill_allocated_cents": 3_000
    }


def test_legacy_succeeded_payment_not_fully_placed_fails_conservation(broken_ledger):
    Credit.objects.filter(source_payment=broken_ledger.unlinked_payment).update(amount_cents=600)

    failed = failing()
    assert list(failed) == ["backfill_conserves_money"]
    assert failed["backfill_conserves_money"].examples == [
        {"kind": "payment", "id": broken_ledger.unlinked_payment.pk, "tenant_id": "acme", "amount_cents": 700,
         "backfill_allocated_cents": 0, "backfill_credited_cents": 600}
    ]


def test_legacy_payment_verified_later_by_a_person_is_not_the_backfills_to_place(broken_ledger):
    pending = mapped_legacy_payment(broken_ledger.tenant, 400, status=LegacyPaymentStatus.SUCCEEDED)
    audit(broken_ledger.tenant, AuditEvent.PAYMENT_VERIFIED, payment_id=pending.pk)
    Credit.objects.create(tenant=broken_ledger.tenant, currency="USD", amount_cents=400, source_payment=pending, reason="leftover")
    audit(broken_ledger.tenant, AuditEvent.CREDIT_ISSUED, credit_id=Credit.objects.latest("pk").pk)

    assert failing() == {}


def test_currency_mismatch_payment_is_reported_for_a_person_without_failing(ledger):
    foreign = mapped_legacy_payment(ledger.tenant, 900, currency="EUR")

    checks = checks_by_name()
    assert all(check.ok for check in checks.values())
    check = checks["currency_mismatch_needs_a_person"]
    assert check.count == 1
    assert check.explanation == verification.NEEDS_A_PERSON.format(count=1)
    assert check.examples[0]["id"] == foreign.pk


def test_currency_mismatch_payment_credited_by_backfill_fails(broken_ledger):
    foreign = mapped_legacy_payment(broken_ledger.tenant, 900, currency="EUR")
    Credit.objects.create(tenant=broken_ledger.tenant, currency="EUR", amount_cents=900, source_payment=foreign, reason="x", backfilled=True)

    failed = failing()
    assert list(failed) == ["currency_mismatch_needs_a_person"]
    assert failed["currency_mismatch_needs_a_person"].explanation == verification.NEEDS_A_PERSON_PLACED.format(
        count=1, allocated=0, credited=1
    )


# Migration progress ------------------------------------------------------------------------------
def test_unmigrated_invoice_and_unmapped_payment_fail_unless_partial_allowed(broken_ledger):
    InvoiceFactory(tenant=broken_ledger.tenant)
    LegacyPaymentFactory(tenant=broken_ledger.tenant)

    failed = failing()
    assert list(failed) == ["migration_complete"]
    assert failed["migration_complete"].explanation == verification.MIGRATION_INCOMPLETE.format(invoices=1, payments=1)
    partial = checks_by_name(allow_partial=True)["migration_complete"]
    assert partial.ok
    assert partial.explanation == verification.MIGRATION_PARTIAL_ALLOWED.format(invoices=1, payments=1)


def test_allocation_on_an_unmigrated_invoice_fails_even_when_partial_allowed(broken_ledger):
    legacy = InvoiceFactory(tenant=broken_ledger.tenant)
    allocate(invoice=legacy, payment=broken_ledger.refunded_payment, amount=100)

    failed = failing(allow_partial=True)
    assert list(failed) == ["migration_complete"]
    assert verification.MIGRATION_HIDDEN_ALLOCATIONS.format(hidden=1) in failed["migration_complete"].explanation


def test_checks_cost_the_same_number_of_queries_however_many_rows(ledger):
    with CaptureQueriesContext(connection) as small:
        invariant_checks(today=TODAY)
    for _ in range(5):
        consistent_ledger_more = MigratedInvoiceFactory(tenant=ledger.tenant, amount_cents=100, status=InvoiceStatus.PAID)
        allocate(invoice=consistent_ledger_more, payment=recorded_payment(ledger.tenant, 100), amount=100)
    with CaptureQueriesContext(connection) as larger:
        invariant_checks(today=TODAY)
    assert len(larger.captured_queries) == len(small.captured_queries)
