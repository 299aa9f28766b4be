"""PostgreSQL enforces the money invariants itself (payments/database/guards_v3.py, composed from
payments/database/rules.py; guards_v2 before 0010).

Each test writes with raw SQL, as a bug or an operator would, then fires the deferred commit-time
check inside the test transaction with `SET CONSTRAINTS ALL IMMEDIATE` (what COMMIT would do).
"""
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from payments.models import Allocation, PaymentAuditLog
from tests.billing.factories import TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def commit_check(sql: str, params: list) -> None:
    """Run one write and the commit-time checks in a savepoint; raises what COMMIT would."""
    commit_check_all([(sql, params)])


def commit_check_all(writes: list[tuple[str, list]]) -> None:
    """Run several writes, then the commit-time checks, in one savepoint; raises what COMMIT would."""
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in writes:
            cursor.execute(sql, params)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


INSERT_ALLOCATION = (
    "INSERT INTO payments_allocation (tenant_id, invoice_id, payment_id, credit_id, amount_cents, backfilled, created_at)"
    " VALUES (%s, %s, %s, %s, %s, false, now())"
)


def test_a_valid_allocation_commits(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)

    commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, payment.pk, None, 1_000])

    assert invoice.allocations.count() == 1


def test_over_applying_an_invoice_is_refused(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    first = PaymentFactory(tenant=tenant, amount_cents=1_000)
    second = PaymentFactory(tenant=tenant, amount_cents=1_000)
    commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, first.pk, None, 600])

    with pytest.raises(IntegrityError, match="invariant 3"):
        commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, second.pk, None, 401])


def test_rejected_money_does_not_count_against_the_invoice(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    rejected = PaymentFactory(tenant=tenant, amount_cents=1_000, verification_status="REJECTED")
    verified = PaymentFactory(tenant=tenant, amount_cents=1_000)
    commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, rejected.pk, None, 1_000])

    commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, verified.pk, None, 1_000])

    with pytest.raises(IntegrityError, match="invariant 3"):
        commit_check("UPDATE payments_payment SET verification_status = 'VERIFIED' WHERE id = %s", [rejected.pk])


def test_lowering_an_invoice_amount_below_its_applied_money_is_refused(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant, amount_cents=1_000)

    with pytest.raises(IntegrityError, match="invariant 3"):
        commit_check("UPDATE billing_invoice SET amount_cents = 999 WHERE id = %s", [allocation.invoice_id])


def test_over_spending_a_payment_is_refused(tenant):
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
    first = MigratedInvoiceFactory(tenant=tenant)
    second = MigratedInvoiceFactory(tenant=tenant)
    commit_check(INSERT_ALLOCATION, [tenant.pk, first.pk, payment.pk, None, 700])

    with pytest.raises(IntegrityError, match="invariant 1"):
        commit_check(INSERT_ALLOCATION, [tenant.pk, second.pk, payment.pk, None, 301])


def test_a_credit_beyond_the_payments_unallocated_money_is_refused(tenant):
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)

    with pytest.raises(IntegrityError, match="invariant 1"):
        commit_check(
            "INSERT INTO payments_credit (tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, created_at)"
            " VALUES (%s, 'KES', 1001, %s, 'x', false, now())",
            [tenant.pk, payment.pk],
        )


def test_a_refund_beyond_the_payments_unallocated_money_is_refused(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant, amount_cents=1_000)

    with pytest.raises(IntegrityError, match="invariant 1"):
        commit_check(
            "INSERT INTO payments_refund (tenant_id, payment_id, amount_cents, reason, created_at)"
            " VALUES (%s, %s, 1, '', now())",
            [tenant.pk, allocation.payment_id],
        )


def test_over_spending_a_credit_is_refused(tenant):
    credit = CreditFactory(tenant=tenant, amount_cents=500)
    invoice = MigratedInvoiceFactory(tenant=tenant)

    with pytest.raises(IntegrityError, match="invariant 2"):
        commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, None, credit.pk, 501])


def test_reversed_allocations_free_their_money(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant, invoice__amount_cents=1_000, amount_cents=1_000)
    commit_check(
        "INSERT INTO payments_allocationreversal (allocation_id, reason, created_at) VALUES (%s, 'x', now())",
        [allocation.pk],
    )
    other = PaymentFactory(tenant=tenant, amount_cents=1_000)

    commit_check(INSERT_ALLOCATION, [tenant.pk, allocation.invoice_id, other.pk, None, 1_000])

    active = Allocation.objects.filter(invoice_id=allocation.invoice_id, reversal__isnull=True)
    assert list(active.values_list("payment_id", "amount_cents")) == [(other.pk, 1_000)]


def test_an_allocation_across_tenants_is_refused(tenant):
    invoice = MigratedInvoiceFactory(tenant=TenantFactory(id="other", currency="KES"))
    payment = PaymentFactory(tenant=tenant)

    with pytest.raises(IntegrityError, match="invariant 4"):
        commit_check(INSERT_ALLOCATION, [invoice.tenant_id, invoice.pk, payment.pk, None, 100])


def test_a_reversed_crossing_allocation_no_longer_blocks_its_invoice(tenant):
    """pay10_cleanup_orphans neutralises a crossing allocation by reversing it; the invoice stays usable."""
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    foreign = PaymentFactory(tenant=TenantFactory(id="other", currency="KES"), amount_cents=100)
    with connection.cursor() as cursor:
        cursor.execute(INSERT_ALLOCATION + " RETURNING id", [tenant.pk, invoice.pk, foreign.pk, None, 100])
        crossing_id = cursor.fetchone()[0]
    commit_check(
        "INSERT INTO payments_allocationreversal (allocation_id, reason, created_at) VALUES (%s, 'crossed', now())",
        [crossing_id],
    )
    mine = PaymentFactory(tenant=tenant, amount_cents=1_000)

    commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, mine.pk, None, 1_000])

    active = Allocation.objects.filter(invoice_id=invoice.pk, reversal__isnull=True)
    assert list(active.values_list("payment_id", "amount_cents")) == [(mine.pk, 1_000)]
    assert Allocation.objects.get(pk=crossing_id).reversal.reason == "crossed"


def test_an_allocation_across_currencies_is_refused(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, currency="USD")
    credit = CreditFactory(tenant=tenant)

    with pytest.raises(IntegrityError, match="invariant 4"):
        commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, None, credit.pk, 100])


def test_an_allocations_money_is_never_updated(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant, amount_cents=1_000)

    with pytest.raises(IntegrityError, match="never updated"):
        commit_check("UPDATE payments_allocation SET amount_cents = 10 WHERE id = %s", [allocation.pk])


def test_allocations_and_reversals_are_never_deleted(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant)
    commit_check(
        "INSERT INTO payments_allocationreversal (allocation_id, reason, created_at) VALUES (%s, 'x', now())",
        [allocation.pk],
    )

    with pytest.raises(IntegrityError, match="never deleted"):
        commit_check("DELETE FROM payments_allocationreversal WHERE allocation_id = %s", [allocation.pk])
    with pytest.raises(IntegrityError, match="never deleted"):
        commit_check("DELETE FROM payments_allocation WHERE id = %s", [allocation.pk])


def test_the_audit_log_is_append_only(tenant):
    entry = PaymentAuditLog.objects.create(tenant=tenant, event_type="PAYMENT_RECORDED", amount_cents=1)

    with pytest.raises(IntegrityError, match="append-only"):
        commit_check("UPDATE payments_paymentauditlog SET amount_cents = 2 WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"):
        commit_check("DELETE FROM payments_paymentauditlog WHERE id = %s", [entry.pk])


def test_the_audit_purge_setting_allows_deleting_history(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant)
    PaymentAuditLog.objects.create(tenant=tenant, event_type="ALLOCATION_CREATED", allocation_id=allocation.pk)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL pay10.audit_purge = 'on'")
        cursor.execute("DELETE FROM payments_paymentauditlog")
        cursor.execute("DELETE FROM payments_allocation")
        cursor.execute("SET LOCAL pay10.audit_purge = 'off'")

    assert not PaymentAuditLog.objects.exists()


def test_deleting_a_user_keeps_their_audit_rows(tenant, django_user_model):
    user = django_user_model.objects.create(username="leaver")
    entry = PaymentAuditLog.objects.create(tenant=tenant, event_type="PAYMENT_RECORDED", actor=user, actor_label="leaver")

    user.delete()

    entry.refresh_from_db()
    assert (entry.actor_id, entry.actor_label) == (None, "leaver")


def pending_checks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pay10_guard_pending")
        return cursor.fetchone()[0]


INSERT_ALLOCATIONS_FROM_PAYMENTS = (
    "INSERT INTO payments_allocation (tenant_id, invoice_id, payment_id, amount_cents, backfilled, created_at)"
    " SELECT p.tenant_id, p.invoice_id, p.id, p.amount_cents, true, now() FROM payments_payment p"
    " WHERE p.tenant_id = %s ORDER BY p.id"
)


def test_a_bulk_insert_select_over_applying_one_invoice_among_many_is_refused_naming_it(tenant):
    invoices = [MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000) for _ in range(5)]
    for invoice in invoices:
        PaymentFactory(tenant=tenant, invoice=invoice, amount_cents=1_000)
    PaymentFactory(tenant=tenant, invoice=invoices[3], amount_cents=1)

    with pytest.raises(IntegrityError, match=f"invariant 3: invoice {invoices[3].pk} over-applied"):
        commit_check(INSERT_ALLOCATIONS_FROM_PAYMENTS, [tenant.pk])


def test_a_bulk_insert_select_within_every_bound_commits(tenant):
    invoices = [MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000) for _ in range(5)]
    for invoice in invoices:
        PaymentFactory(tenant=tenant, invoice=invoice, amount_cents=1_000)

    commit_check(INSERT_ALLOCATIONS_FROM_PAYMENTS, [tenant.pk])

    assert sum(invoice.allocations.count() for invoice in invoices) == 5
    assert pending_checks() == 0


def test_a_transaction_may_pass_through_an_over_applied_state_when_it_ends_valid(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant, invoice__amount_cents=1_000, amount_cents=1_000)
    other = PaymentFactory(tenant=tenant, amount_cents=1_000)

    commit_check_all(
        [
            (INSERT_ALLOCATION, [tenant.pk, allocation.invoice_id, other.pk, None, 1_000]),
            (
                "INSERT INTO payments_allocationreversal (allocation_id, reason, created_at) VALUES (%s, 'x', now())",
                [allocation.pk],
            ),
        ]
    )

    assert allocation.invoice.allocations.count() == 2


def test_a_rolled_back_savepoint_takes_its_unchecked_writes_with_it(tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000)
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)

    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(INSERT_ALLOCATION, [tenant.pk, invoice.pk, payment.pk, None, 5_000])
            raise RuntimeError("rolled back")
        commit_check(INSERT_ALLOCATION, [tenant.pk, invoice.pk, payment.pk, None, 1_000])

    assert invoice.allocations.get().amount_cents == 1_000


def test_an_update_changing_no_money_column_queues_no_check(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant)
    commit_check_all([])  # the factory's writes are checked and their queued check is done
    assert pending_checks() == 0

    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_payment SET status = 'SUCCEEDED', channel = 'CARD' WHERE id = %s", [allocation.payment_id])
        cursor.execute("UPDATE billing_invoice SET status = 'PAID', updated_at = now() WHERE id = %s", [allocation.invoice_id])
        queued = pending_checks()
        cursor.execute("UPDATE payments_payment SET verification_status = 'PENDING' WHERE id = %s", [allocation.payment_id])

    assert (queued, pending_checks()) == (0, 1)


def test_moving_a_payment_with_allocations_to_another_currency_is_refused(tenant):
    allocation = AllocationFactory(invoice__tenant=tenant)

    with pytest.raises(IntegrityError, match="invariant 4"):
        commit_check("UPDATE payments_payment SET currency = 'USD' WHERE id = %s", [allocation.payment_id])


def test_a_credit_in_another_currency_than_its_source_payment_is_refused(tenant):
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)

    with pytest.raises(IntegrityError, match="invariant 4: money of payment"):
        commit_check(
            "INSERT INTO payments_credit (tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, created_at)"
            " VALUES (%s, 'USD', 100, %s, 'x', false, now())",
            [tenant.pk, payment.pk],
        )


def test_refunding_more_than_a_credit_holds_is_refused(tenant):
    payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
    credit = CreditFactory(tenant=tenant, amount_cents=300, source_payment=payment)

    with pytest.raises(IntegrityError, match="invariant 2"):
        commit_check(
            "INSERT INTO payments_refund (tenant_id, payment_id, credit_id, amount_cents, reason, created_at)"
            " VALUES (%s, %s, %s, 301, '', now())",
            [tenant.pk, payment.pk, credit.pk],
        )
