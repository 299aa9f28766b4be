"""Ledgers the payments tests share (helpers, no tests here): `consistent_ledger` (every invariant
holds) and its `ledger`/`broken_ledger` fixtures, the writes that build it around the services, and
`mixed_book` (invoices of every kind the readers meet).

`broken_ledger` is for a test that breaks the ledger on purpose: the writes run inside pytest-django's
test transaction; on PostgreSQL the deferred constraint triggers that reject invariant-breaking writes
fire only at commit, which never comes. Django's TestCase would still run `SET CONSTRAINTS ALL
IMMEDIATE` at teardown to check deferred constraints; the fixture marks the transaction for rollback
first, so the rows broken on purpose are discarded unchecked.
"""
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, Tenant
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    BackfillDeviation,
    Channel,
    Credit,
    InvoiceMigration,
    LegacyPaymentStatus,
    Payment,
    PaymentMigration,
    Refund,
    VerificationStatus,
)
from payments.services.audit import audit_record
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import (
    AllocationFactory,
    CreditFactory,
    LegacyPaymentFactory,
    MigratedInvoiceFactory,
    PaymentFactory,
)

TODAY = timezone.localdate()


@dataclass
class Ledger:
    tenant: Tenant
    invoice: Invoice  # 10 000: 4 000 paid by `payment`, 2 000 pending from `pending_payment`
    payment: Payment  # 5 000: 4 000 allocated, 1 000 issued as `credit`
    credit: Credit  # 1 000, applied in full to `credit_invoice`
    credit_invoice: Invoice
    pending_payment: Payment
    refunded_payment: Payment  # 1 000: 500 refunded, a 300 allocation reversed
    legacy_invoice: Invoice  # legacy PAID 3 000: 2 000 of `legacy_payment` + a 1 000 synthetic shortfall
    legacy_payment: Payment
    unlinked_payment: Payment  # legacy 700 with no invoice: backfilled to credit
    overdue_invoice: Invoice  # legacy ISSUED, due last week: backfill stored OVERDUE (a STATUS_CHANGED deviation)


def audit(tenant: Tenant, event: str, **ids) -> None:
    audit_record(tenant_id=tenant.pk, event_type=event, **ids)


def allocate(*, invoice: Invoice, amount: int, payment: Payment | None = None, credit: Credit | None = None) -> Allocation:
    allocation = Allocation.objects.create(
        tenant=invoice.tenant, invoice=invoice, payment=payment, credit=credit, amount_cents=amount
    )
    event = AuditEvent.CREDIT_APPLIED if credit else AuditEvent.ALLOCATION_CREATED
    audit(invoice.tenant, event, allocation_id=allocation.pk, invoice_id=invoice.pk, amount_cents=amount)
    return allocation


def recorded_payment(tenant: Tenant, amount: int, **fields) -> Payment:
    payment = PaymentFactory(tenant=tenant, amount_cents=amount, **fields)
    audit(tenant, AuditEvent.PAYMENT_RECORDED, payment_id=payment.pk, amount_cents=amount)
    return payment


def backfilled_invoice(tenant: Tenant, *, legacy_status: str, status: str, legacy_paid: int, **fields) -> Invoice:
    invoice = InvoiceFactory(tenant=tenant, status=status, **fields)
    InvoiceMigration.objects.create(
        invoice=invoice, legacy_status=legacy_status, legacy_amount_paid_cents=invoice.amount_paid_cents,
        legacy_paid_cents=legacy_paid,
    )
    audit_record(tenant_id=tenant.pk, event_type=AuditEvent.INVOICE_BACKFILLED, invoice_id=invoice.pk, backfilled=True)
    if legacy_status != status:
        BackfillDeviation.objects.create(
            kind=BackfillDeviation.Kind.STATUS_CHANGED, tenant=tenant, invoice=invoice, invoice_number=invoice.number,
            legacy={"status": legacy_status}, new={"status": status},
        )
    return invoice


def mapped_legacy_payment(tenant: Tenant, amount: int, **fields) -> Payment:
    payment = LegacyPaymentFactory(
        tenant=tenant, amount_cents=amount, channel=Channel.CARD, verification_status=VerificationStatus.VERIFIED, **fields
    )
    PaymentMigration.objects.create(payment=payment)
    audit_record(tenant_id=tenant.pk, event_type=AuditEvent.PAYMENT_BACKFILLED, payment_id=payment.pk, backfilled=True)
    return payment


def consistent_ledger() -> Ledger:
    """A small ledger that holds every invariant: new PAY-10 money and backfilled legacy money."""
    tenant = TenantFactory(id="acme", currency="USD")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, status=InvoiceStatus.PARTIALLY_PAID)
    payment = recorded_payment(tenant, 5_000)
    allocate(invoice=invoice, payment=payment, amount=4_000)
    credit = CreditFactory(tenant=tenant, amount_cents=1_000, source_payment=payment)
    audit(tenant, AuditEvent.CREDIT_ISSUED, credit_id=credit.pk, payment_id=payment.pk)
    credit_invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000, status=InvoiceStatus.PAID)
    allocate(invoice=credit_invoice, credit=credit, amount=1_000)
    pending_payment = recorded_payment(
        tenant, 2_000, verification_status=VerificationStatus.PENDING, status=LegacyPaymentStatus.PENDING
    )
    allocate(invoice=invoice, payment=pending_payment, amount=2_000)
    refunded_payment = recorded_payment(tenant, 1_000)
    Refund.objects.create(tenant=tenant, payment=refunded_payment, amount_cents=500)
    audit(tenant, AuditEvent.PAYMENT_REFUNDED, payment_id=refunded_payment.pk, amount_cents=500)
    released = allocate(invoice=invoice, payment=refunded_payment, amount=300)
    AllocationReversal.objects.create(allocation=released, reason="customer asked")
    audit(tenant, AuditEvent.ALLOCATION_REVERSED, allocation_id=released.pk, amount_cents=300)

    legacy_invoice = backfilled_invoice(
        tenant, legacy_status=InvoiceStatus.PAID, status=InvoiceStatus.PAID, legacy_paid=3_000, amount_cents=3_000
    )
    legacy_payment = mapped_legacy_payment(tenant, 2_000, invoice=legacy_invoice)
    synthetic = Payment.objects.create(
        tenant=tenant, invoice=legacy_invoice, amount_cents=1_000, currency="USD", method="legacy",
        status=LegacyPaymentStatus.SUCCEEDED, channel=Channel.LEGACY, verification_status=VerificationStatus.VERIFIED,
        idempotency_key=f"pay10-backfill:{legacy_invoice.pk}",
    )
    for source, amount in ((legacy_payment, 2_000), (synthetic, 1_000)):
        Allocation.objects.create(
            tenant=tenant, invoice=legacy_invoice, payment=source, amount_cents=amount, backfilled=True
        )
    unlinked_payment = mapped_legacy_payment(tenant, 700)
    Credit.objects.create(
        tenant=tenant, currency="USD", amount_cents=700, source_payment=unlinked_payment, reason="unlinked", backfilled=True
    )
    overdue_invoice = backfilled_invoice(
        tenant, legacy_status=InvoiceStatus.ISSUED, status=InvoiceStatus.OVERDUE, legacy_paid=0,
        due_date=TODAY - timedelta(days=7),
    )
    return Ledger(
        tenant=tenant, invoice=invoice, payment=payment, credit=credit, credit_invoice=credit_invoice,
        pending_payment=pending_payment, refunded_payment=refunded_payment, legacy_invoice=legacy_invoice,
        legacy_payment=legacy_payment, unlinked_payment=unlinked_payment, overdue_invoice=overdue_invoice,
    )


@pytest.fixture
def ledger() -> Ledger:
    return consistent_ledger()


@pytest.fixture
def broken_ledger(ledger):
    """The ledger, for a test that breaks it: its transaction is rolled back without Django's
    end-of-test constraint check (see the module docstring)."""
    yield ledger
    transaction.set_rollback(True)


def mixed_book(tenant):
    """Invoices of every kind the readers meet: several allocations each (verified, pending,
    rejected, reversed, from a credit), explicit statuses, and not-yet-migrated legacy rows."""
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localdate()
    busy = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, due_date=today - timedelta(days=3))
    AllocationFactory(invoice=busy, amount_cents=1_000)
    AllocationFactory(invoice=busy, amount_cents=1_500)
    for verification, amount in ((VerificationStatus.PENDING, 2_000), (VerificationStatus.REJECTED, 700)):
        payment = PaymentFactory(tenant=tenant, verification_status=verification, amount_cents=amount)
        AllocationFactory(invoice=busy, payment=payment, amount_cents=amount)
    AllocationReversal.objects.create(allocation=AllocationFactory(invoice=busy, amount_cents=900), reason="test")
    credit = CreditFactory(tenant=tenant, amount_cents=2_000)
    AllocationFactory(invoice=busy, payment=None, credit=credit, amount_cents=600)

    paid = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000)
    AllocationFactory(invoice=paid, amount_cents=1_000)
    AllocationFactory(invoice=paid, amount_cents=2_000)
    pending_only = MigratedInvoiceFactory(tenant=tenant, amount_cents=3_000, due_date=today + timedelta(days=3))
    pending = PaymentFactory(tenant=tenant, verification_status=VerificationStatus.PENDING, amount_cents=3_000)
    AllocationFactory(invoice=pending_only, payment=pending, amount_cents=3_000)
    MigratedInvoiceFactory(tenant=tenant, amount_cents=4_000, due_date=today - timedelta(days=1))
    voided = MigratedInvoiceFactory(tenant=tenant, status="VOID", amount_cents=5_000)
    AllocationFactory(invoice=voided, amount_cents=500)
    MigratedInvoiceFactory(tenant=tenant, status="DRAFT", amount_cents=800)
    MigratedInvoiceFactory(tenant=tenant, amount_cents=0)

    for status, amount_paid, due in (
        ("PAID", 0, today),
        ("PARTIALLY_PAID", 12_345, today),
        ("PARTIALLY_PAID", 2_000, today - timedelta(days=40)),
        ("ISSUED", 1_000, today + timedelta(days=10)),
        ("OVERDUE", 0, today - timedelta(days=100)),
        ("DRAFT", 10_000, None),
        ("VOID", 10_000, None),
    ):
        InvoiceFactory(tenant=tenant, status=status, amount_cents=10_000, amount_paid_cents=amount_paid, due_date=due)
