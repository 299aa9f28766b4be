"""Random sequences of every payment operation keep every money invariant and a complete audit trail.

A hypothesis state machine drives the services (refusals are allowed; a refusal must change
nothing) and checks SPEC.md's invariants through the balance selectors after every step.
"""
import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, F, Q
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from billing.models import Invoice, InvoiceStatus
from payments.models import (
    Allocation,
    AllocationReversal,
    AuditEvent,
    Credit,
    Payment,
    PaymentAuditLog,
    Refund,
    VerificationStatus,
)
from billing.selectors.finance import DateRange, _pending_verification
from payments.selectors.balances import (
    credits_with_balances,
    invoices_with_balances,
    payments_with_balances,
    unapplied_credit_by_currency,
)
from payments.selectors.figures import balances_ready, tenant_balances
from payments.selectors.verification import check_read_model
from payments.services import errors
from payments.services.allocations import allocation_create, allocation_reverse, payment_auto_allocate
from payments.services.credits import credit_apply, credit_issue
from payments.services.invoices import invoice_create, invoice_void
from payments.services.lookups import ALL_TENANTS
from payments.services.payments import payment_record, payment_refund, payment_reject, payment_verify
from tests.billing.factories import TenantFactory

pytestmark = pytest.mark.django_db

amounts = st.integers(min_value=1, max_value=6_000)
picks = st.integers(min_value=0, max_value=50)


def snapshot() -> tuple:
    return tuple(
        model.objects.count() for model in (Payment, Allocation, AllocationReversal, Credit, Refund, PaymentAuditLog)
    )


class PaymentOperations(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        self.tenant = TenantFactory(id="acme", currency="KES")
        self.other_tenant = TenantFactory(id="other", currency="KES")
        self.actor = get_user_model().objects.create(username="finance", is_staff=True)
        self.invoice_number = 0

    def teardown(self):
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    @staticmethod
    def pick(model, index: int):
        ids = list(model.objects.order_by("pk").values_list("pk", flat=True))
        return ids[index % len(ids)] if ids else 0

    def attempt(self, operation, **kwargs) -> None:
        """Run one operation; a refusal is fine but must leave no trace."""
        before = snapshot()
        try:
            operation(actor=self.actor, **kwargs)
        except errors.PaymentOperationError:
            assert snapshot() == before

    @rule(amount=st.integers(min_value=0, max_value=8_000), other=st.booleans(), draft=st.booleans())
    def create_invoice(self, amount, other, draft):
        self.invoice_number += 1
        invoice_create(
            tenant=self.other_tenant if other else self.tenant,
            number=f"N-{self.invoice_number}",
            amount_cents=amount,
            status=InvoiceStatus.DRAFT if draft else InvoiceStatus.ISSUED,
            actor=self.actor,
        )

    @rule(amount=amounts, verified=st.booleans(), key=st.sampled_from([None, "k1", "k2"]))
    def record_payment(self, amount, verified, key):
        status = VerificationStatus.VERIFIED if verified else VerificationStatus.PENDING
        self.attempt(
            payment_record, tenant=self.tenant, amount_cents=amount, currency="KES", channel="CASH",
            verification_status=status, idempotency_key=key,
        )

    @rule(payment=picks)
    def verify(self, payment):
        self.attempt(payment_verify, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment))

    @rule(payment=picks)
    def reject(self, payment):
        self.attempt(payment_reject, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment), reason="bounced")

    @rule(payment=picks, invoice=picks, amount=amounts)
    def allocate(self, payment, invoice, amount):
        self.attempt(
            allocation_create, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment),
            invoice_id=self.pick(Invoice, invoice), amount_cents=amount,
        )

    @rule(payment=picks)
    def auto_allocate(self, payment):
        self.attempt(payment_auto_allocate, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment))

    @rule(payment=picks, amount=amounts)
    def issue_credit(self, payment, amount):
        self.attempt(credit_issue, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment), amount_cents=amount)

    @rule(credit=picks, invoice=picks, amount=amounts)
    def apply_credit(self, credit, invoice, amount):
        self.attempt(
            credit_apply, tenant=ALL_TENANTS, credit_id=self.pick(Credit, credit), invoice_id=self.pick(Invoice, invoice),
            amount_cents=amount,
        )

    @rule(allocation=picks)
    def reverse(self, allocation):
        self.attempt(
            allocation_reverse, tenant=ALL_TENANTS, allocation_id=self.pick(Allocation, allocation), reason="wrong invoice"
        )

    @rule(payment=picks, amount=amounts)
    def refund(self, payment, amount):
        self.attempt(payment_refund, tenant=ALL_TENANTS, payment_id=self.pick(Payment, payment), amount_cents=amount)

    @rule(invoice=picks)
    def void(self, invoice):
        self.attempt(invoice_void, tenant=ALL_TENANTS, invoice_id=self.pick(Invoice, invoice))

    @invariant()
    def payments_are_never_over_spent(self):
        for payment in payments_with_balances():
            assert payment.unallocated_cents >= 0, payment
            if payment.verification_status == VerificationStatus.REJECTED:
                assert payment.allocated_cents == 0
            if payment.verification_status != VerificationStatus.VERIFIED:
                assert payment.credited_cents == 0 or payment.verification_status == VerificationStatus.REJECTED
                assert payment.refunded_cents == 0

    @invariant()
    def credits_are_never_over_spent(self):
        for credit in credits_with_balances():
            assert credit.applied_cents + credit.refunded_cents <= credit.amount_cents
            assert credit.remaining_cents >= 0

    @invariant()
    def invoices_are_never_over_applied_and_statuses_are_current(self):
        for invoice in invoices_with_balances():
            assert invoice.paid_cents + invoice.pending_cents <= invoice.amount_cents
            assert invoice.status == invoice.status_today
            if invoice.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
                assert invoice.paid_cents == invoice.pending_cents == 0

    @invariant()
    def allocations_stay_within_tenant_and_currency(self):
        crossing = Allocation.objects.filter(
            ~Q(invoice__tenant_id=F("tenant_id"))
            | Q(payment__isnull=False) & ~Q(payment__tenant_id=F("invoice__tenant_id"))
            | Q(credit__isnull=False) & ~Q(credit__tenant_id=F("invoice__tenant_id"))
            | Q(payment__isnull=False) & ~Q(payment__currency=F("invoice__currency"))
        )
        assert not crossing.exists()

    @invariant()
    def every_money_change_has_its_audit_row(self):
        def audited(event_types, field, ids):
            logged = set(
                PaymentAuditLog.objects.filter(event_type__in=event_types).values_list(field, flat=True)
            )
            return set(ids) <= logged

        assert audited([AuditEvent.PAYMENT_RECORDED], "payment_id", Payment.objects.values_list("pk", flat=True))
        assert audited(
            [AuditEvent.ALLOCATION_CREATED, AuditEvent.CREDIT_APPLIED],
            "allocation_id",
            Allocation.objects.values_list("pk", flat=True),
        )
        assert audited(
            [AuditEvent.ALLOCATION_REVERSED], "allocation_id", AllocationReversal.objects.values_list("allocation_id", flat=True)
        )
        assert audited([AuditEvent.CREDIT_ISSUED], "credit_id", Credit.objects.values_list("pk", flat=True))
        refund_logs = PaymentAuditLog.objects.filter(event_type=AuditEvent.PAYMENT_REFUNDED).count()
        assert refund_logs == Refund.objects.count()
        verified_logs = (
            PaymentAuditLog.objects.filter(event_type__in=[AuditEvent.PAYMENT_VERIFIED, AuditEvent.PAYMENT_REJECTED])
            .values("payment_id")
            .annotate(n=Count("pk"))
            .filter(n__gt=2)
        )
        assert not verified_logs.exists()

    @invariant()
    def the_read_model_equals_the_allocations(self):
        # PostgreSQL keeps the FIN-01/FIN-02 read model at commit; figures_ready() brings this
        # (never committed) transaction's upkeep forward, so it must match after every step.
        result = check_read_model()
        assert result.ok, result.as_dict()


    @invariant()
    def the_tenant_balances_equal_the_live_figures(self):
        # PostgreSQL keeps FIN-01's tenant balances at commit too; balances_ready() brings this
        # transaction's upkeep forward (SQLite has none: its readers compute live).
        if connection.vendor != "postgresql":
            return
        assert balances_ready()
        for tenant in (self.tenant, self.other_tenant):
            live_pending = _pending_verification(tenant=tenant, date_range=DateRange(None, None))
            live_credit = unapplied_credit_by_currency(tenant=tenant)
            kept = tenant_balances(tenant=tenant)
            for currency in {*live_pending, *live_credit, *kept}:
                held = kept.get(currency, {"pending": 0, "credit": 0})
                assert (held["pending"], held["credit"]) == (live_pending.get(currency, 0), live_credit.get(currency, 0))


def test_random_operation_sequences_keep_every_invariant():
    run_state_machine_as_test(
        PaymentOperations,
        settings=settings(
            max_examples=6,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
