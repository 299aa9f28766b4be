"""Twin tests: each money rule's Python definition (`payments.domain`) and its SQL definition
(`payments.database.rules`, and the ORM expressions of `payments.selectors.balances`) give the same
answers over generated ledgers, on SQLite and on PostgreSQL (the legacy paid figure, written with
PostgreSQL's least/greatest, on PostgreSQL only).

Each example is written inside a savepoint that is rolled back: the PostgreSQL guards, deferred to
commit, never see it, so generated ledgers may also break the invariants (an over-applied invoice,
an orphan): the rules must agree on those too.
"""
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Invoice
from payments.database import rules
from payments.domain import aging, allocations as rule
from payments.domain import status as engine
from payments.domain.money import PaymentBalance, credit_remaining, payment_unallocated, refunded_total
from payments.models import Allocation, AllocationReversal, Credit, LegacyPaymentStatus, Payment, Refund
from payments.selectors.balances import (
    PENDING_VERIFICATION,
    credits_with_balances,
    invoices_with_balances,
    payments_with_balances,
)
from payments.selectors.verification import orphan_counts
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import MigratedInvoiceFactory

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 26)
TWIN = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

sources = st.sampled_from(["credit", None, rule.PENDING, rule.VERIFIED, rule.REJECTED])
allocation_rows = st.lists(
    st.tuples(st.integers(1, 5_000), st.booleans(), sources), min_size=0, max_size=6
)


def _one(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchone()


class rolled_back(transaction.Atomic):
    """A savepoint rolled back at exit, whatever happened inside."""

    def __init__(self):
        super().__init__(using=None, savepoint=True, durable=False)

    def __exit__(self, exc_type, exc_value, traceback):
        transaction.set_rollback(True)
        return super().__exit__(exc_type, exc_value, traceback)


def _ledger(rows):
    """An invoice of 10,000 with the allocations `rows` describe; their Python twins."""
    tenant = TenantFactory(id="acme", currency="KES")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, status=engine.ISSUED)
    funding = Payment.objects.create(tenant=tenant, amount_cents=10**9, currency="KES", verification_status=rule.VERIFIED)
    twins = []
    for amount, reversed_, source in rows:
        if source == "credit":
            credit = Credit.objects.create(tenant=tenant, currency="KES", amount_cents=amount, source_payment=funding)
            allocation = Allocation.objects.create(tenant=tenant, invoice=invoice, credit=credit, amount_cents=amount)
        else:
            payment = Payment.objects.create(
                tenant=tenant, amount_cents=amount, currency="KES", verification_status=source
            )
            allocation = Allocation.objects.create(tenant=tenant, invoice=invoice, payment=payment, amount_cents=amount)
        if reversed_:
            AllocationReversal.objects.create(allocation=allocation, reason="twin")
        twins.append(rule.AllocationMoney(
            amount_cents=amount, reversed=reversed_, from_credit=source == "credit",
            payment_verification=None if source == "credit" else source,
        ))
    return invoice, twins


def _sum_where(condition: str, invoice_id: int) -> int:
    return _one(
        f"SELECT COALESCE(SUM(CASE WHEN {condition} THEN a.amount_cents ELSE 0 END), 0) FROM payments_allocation a "
        f"{rules.REVERSAL_JOIN} LEFT JOIN payments_payment p ON p.id = a.payment_id WHERE a.invoice_id = %s",
        [invoice_id],
    )[0]


@TWIN
@given(rows=allocation_rows)
def test_invoice_paid_pending_and_counted_figures_agree(rows):
    with rolled_back():
        invoice, twins = _ledger(rows)
        paid = rule.invoice_paid_cents(twins)
        pending = rule.invoice_pending_cents(twins)
        counted = rule.invoice_counted_cents(twins)

        assert _sum_where(f"{rules.NOT_REVERSED} AND ({rules.PAYS_INVOICE})", invoice.pk) == paid
        assert _sum_where(f"{rules.NOT_REVERSED} AND ({rules.PENDING_ON_INVOICE})", invoice.pk) == pending
        assert _sum_where(f"{rules.NOT_REVERSED} AND ({rules.COUNTED_AGAINST_INVOICE})", invoice.pk) == counted
        # the NOT EXISTS spelling of "active" is the LEFT JOIN one
        assert _one(
            f"SELECT COALESCE(SUM(a.amount_cents), 0) FROM payments_allocation a LEFT JOIN payments_payment p "
            f"ON p.id = a.payment_id WHERE a.invoice_id = %s AND {rules.ACTIVE_ALLOCATION} AND ({rules.PAYS_INVOICE})",
            [invoice.pk],
        )[0] == paid
        # the ORM's figures (API, FIN-01/FIN-02) are the paid and pending ones, not the counted one
        row = invoices_with_balances().values("paid_cents", "pending_cents").get(pk=invoice.pk)
        assert (row["paid_cents"], row["pending_cents"]) == (paid, pending)


payment_uses = st.tuples(
    st.lists(st.tuples(st.integers(1, 3_000), st.booleans()), max_size=4),  # allocations (amount, reversed)
    st.lists(st.integers(1, 3_000), max_size=3),  # credits issued from it
    st.lists(st.integers(1, 3_000), max_size=3),  # refunds of its unallocated money
    st.lists(st.tuples(st.integers(1, 3_000), st.integers(0, 3_000), st.integers(0, 3_000)), max_size=2),
)


@TWIN
@given(uses=payment_uses)
def test_payment_and_credit_usage_agree(uses):
    allocated_rows, credit_amounts, refund_amounts, credit_uses = uses
    with rolled_back():
        tenant = TenantFactory(id="acme", currency="KES")
        invoice = InvoiceFactory(tenant=tenant, amount_cents=10**9, status=engine.ISSUED)
        payment = Payment.objects.create(tenant=tenant, amount_cents=50_000, currency="KES", verification_status=rule.VERIFIED)
        for amount, reversed_ in allocated_rows:
            allocation = Allocation.objects.create(tenant=tenant, invoice=invoice, payment=payment, amount_cents=amount)
            if reversed_:
                AllocationReversal.objects.create(allocation=allocation, reason="twin")
        for amount in credit_amounts:
            Credit.objects.create(tenant=tenant, currency="KES", amount_cents=amount, source_payment=payment)
        for amount in refund_amounts:
            Refund.objects.create(tenant=tenant, payment=payment, amount_cents=amount)
        credits = []
        for amount, applied, refunded in credit_uses:
            credit = Credit.objects.create(tenant=tenant, currency="KES", amount_cents=amount, source_payment=payment)
            if applied:
                Allocation.objects.create(tenant=tenant, invoice=invoice, credit=credit, amount_cents=applied)
            if refunded:
                Refund.objects.create(tenant=tenant, payment=payment, credit=credit, amount_cents=refunded)
            credits.append((credit, amount, applied, refunded))

        allocated = sum(amount for amount, reversed_ in allocated_rows if not reversed_)
        credited = sum(credit_amounts) + sum(amount for amount, _a, _r in credit_uses)
        refunded_unallocated = sum(refund_amounts)
        unallocated = payment_unallocated(
            amount_cents=50_000, allocated_cents=allocated, credited_cents=credited,
            refunded_unallocated_cents=refunded_unallocated,
        )
        sql = _one(
            f"SELECT COALESCE(SUM(allocated), 0), COALESCE(SUM(credited), 0), COALESCE(SUM(refunded), 0) "
            f"FROM ({rules.PAYMENT_USES}) uses WHERE payment_id = %s",
            [payment.pk],
        )
        assert tuple(int(x) for x in sql) == (allocated, credited, refunded_unallocated)
        row = payments_with_balances().get(pk=payment.pk)
        assert PaymentBalance(
            amount_cents=row.amount_cents, allocated_cents=row.allocated_cents, credited_cents=row.credited_cents,
            refunded_cents=row.refunded_cents,
        ).unallocated_cents == row.unallocated_cents == unallocated
        assert row.refunded_total_cents == refunded_total(
            refunds_of_unallocated_cents=refunded_unallocated, refunds_of_credits_cents=sum(r for _c, _a, _p, r in credits)
        )

        for credit, amount, applied, refunded in credits:
            remaining = credit_remaining(amount_cents=amount, applied_cents=applied, refunded_cents=refunded)
            used = _one(
                f"SELECT COALESCE(SUM(applied), 0) + COALESCE(SUM(refunded), 0) FROM ({rules.CREDIT_USES}) uses "
                f"WHERE credit_id = %s", [credit.pk],
            )[0]
            assert amount - int(used) == remaining
            assert credits_with_balances().get(pk=credit.pk).remaining_cents == remaining


@TWIN
@given(
    current=st.sampled_from(engine.ALL_STATUSES),
    amount=st.integers(0, 10**6),
    paid=st.integers(0, 2 * 10**6),
    due=st.none() | st.dates(min_value=TODAY - timedelta(days=200), max_value=TODAY + timedelta(days=30)),
)
def test_status_verdict_agrees_with_the_engine(current, amount, paid, due):
    with rolled_back():
        invoice = InvoiceFactory(status=current, amount_cents=amount, due_date=due)
        today = "CAST(%s AS DATE)" if connection.vendor == "postgresql" else "%s"
        verdict = _one(
            f"SELECT {rules.status_verdict('CAST(%s AS BIGINT)', today)} FROM billing_invoice i WHERE i.id = %s",
            [paid, TODAY.isoformat(), paid, invoice.pk],
        )[0]
        assert verdict == engine.invoice_status(
            current_status=current, amount_cents=amount, paid_cents=paid, due_date=due, today=TODAY
        )


@TWIN
@given(due=st.none() | st.just(aging.NO_DUE) | st.dates(min_value=TODAY - timedelta(days=200), max_value=TODAY + timedelta(days=30)))
def test_aging_bucket_agrees(due):
    from billing.selectors.finance import _aging_bucket_expression

    with rolled_back():
        invoice = InvoiceFactory(due_date=due)
        minus = lambda days: f"'{(TODAY - timedelta(days=days)).isoformat()}'"  # noqa: E731
        sql = _one(
            f"SELECT {rules.aging_bucket_sql('i.due_date', repr(TODAY.isoformat()), minus)} FROM billing_invoice i WHERE i.id = %s",
            [invoice.pk],
        )[0]
        orm = Invoice.objects.filter(pk=invoice.pk).annotate(b=_aging_bucket_expression(TODAY)).values_list("b", flat=True).get()
        expected = aging.aging_bucket(due, TODAY)
        assert sql == expected
        if due != aging.NO_DUE:  # the ORM reads invoices, which have no NO_DUE key
            assert orm == expected


@pytest.mark.postgres
@TWIN
@given(status=st.sampled_from(engine.ALL_STATUSES), amount=st.integers(0, 10**6), amount_paid=st.integers(0, 2 * 10**6))
def test_legacy_paid_figure_agrees(status, amount, amount_paid):
    with rolled_back():
        invoice = InvoiceFactory(status=status, amount_cents=amount, amount_paid_cents=amount_paid)
        sql = _one(f"SELECT {rules.LEGACY_PAID} FROM billing_invoice i WHERE i.id = %s", [invoice.pk])[0]
        orm = invoices_with_balances().values_list("paid_cents", flat=True).get(pk=invoice.pk)  # not migrated
        expected = engine.legacy_paid_cents(status=status, amount_cents=amount, amount_paid_cents=amount_paid)
        assert sql == orm == expected


@TWIN
@given(
    payments=st.lists(
        st.tuples(st.sampled_from([None, rule.PENDING, rule.VERIFIED, rule.REJECTED]),
                  st.sampled_from(list(LegacyPaymentStatus.values))),
        min_size=1, max_size=8,
    )
)
def test_pending_verification_agrees(payments):
    """FIN-01's pending figure: the ORM condition, the SQL kept in `TenantBalance`, and the services'
    own words (a legacy row not mapped yet counts by its legacy status)."""
    with rolled_back():
        tenant = TenantFactory(id="acme", currency="KES")
        rows = [
            Payment.objects.create(tenant=tenant, amount_cents=100, currency="KES", verification_status=verification,
                                   status=legacy)
            for verification, legacy in payments
        ]
        ids = [row.pk for row in rows]
        orm = set(Payment.objects.filter(PENDING_VERIFICATION, pk__in=ids).values_list("pk", flat=True))
        with connection.cursor() as cursor:
            placeholders = ", ".join(["%s"] * len(ids))
            cursor.execute(
                f"SELECT p.id FROM payments_payment p WHERE p.id IN ({placeholders}) AND ({rules.PENDING_VERIFICATION})", ids
            )
            sql = {row[0] for row in cursor.fetchall()}
        expected = {
            row.pk for row, (verification, legacy) in zip(rows, payments)
            if verification == rule.PENDING or (verification is None and legacy == LegacyPaymentStatus.PENDING)
        }
        assert orm == sql == expected


orphan_cases = st.tuples(
    st.sampled_from(["none", "invoice", "payment", "credit"]),  # what is missing
    st.booleans(),  # reversed
    st.sampled_from(["none", "allocation tenant", "source tenant", "source currency"]),  # what crosses
    st.booleans(),  # from a credit
)


@TWIN
@given(case=orphan_cases)
def test_orphan_agrees(case):
    missing, reversed_, crosses, from_credit = case
    if missing in ("payment", "credit"):
        from_credit = missing == "credit"
    with rolled_back():
        tenant = TenantFactory(id="acme", currency="KES")
        other = TenantFactory(id="other", currency="USD")
        invoice = InvoiceFactory(tenant=tenant, amount_cents=10_000, currency="KES")
        source_tenant = other if crosses == "source tenant" else tenant
        currency = "USD" if crosses == "source currency" else "KES"
        payment = Payment.objects.create(tenant=source_tenant, amount_cents=500, currency=currency, verification_status=rule.VERIFIED)
        source = {"payment": payment}
        if from_credit:
            source = {"credit": Credit.objects.create(tenant=source_tenant, currency=currency, amount_cents=500, source_payment=payment)}
        allocation = Allocation.objects.create(
            tenant=other if crosses == "allocation tenant" else tenant, invoice=invoice, amount_cents=100, **source
        )
        if reversed_:
            AllocationReversal.objects.create(allocation=allocation, reason="twin")
        gone = {"invoice": ("billing_invoice", allocation.invoice_id), "payment": ("payments_payment", allocation.payment_id),
                "credit": ("payments_credit", allocation.credit_id)}.get(missing)
        if gone:  # around the foreign keys (deferred, to a commit that never comes)
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {gone[0]} WHERE id = %s", [gone[1]])
        expected = rule.is_orphan(parent_missing=gone is not None, reversed=reversed_, crosses=crosses != "none")
        assert orphan_counts()[0] == int(expected)
        assert orphan_counts(tenant_id=allocation.tenant_id)[0] == int(expected)  # an allocation is in its own tenant
