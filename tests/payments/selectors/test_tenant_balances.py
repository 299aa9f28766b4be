"""FIN-01's tenant balances (`TenantBalance`, `payments/database/balances_v1.py`), kept by PostgreSQL
at commit: whoever writes (the services, the backfill, first-write migration, raw SQL, many threads
at once), the balances equal pending verification and unapplied credit computed live, and FIN-01
read from them gives the live document."""
from datetime import date, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction

from billing.models import Tenant
from billing.selectors import finance
from billing.selectors.finance import DateRange, Period, _pending_verification, finance_summary
from payments.demo.legacy_seed import legacy_seed
from payments.models import (
    BALANCE_SLOTS,
    BalanceCredit,
    BalancePayment,
    Credit,
    Payment,
    TenantBalance,
    TenantBalanceBuild,
    VerificationStatus,
)
from payments.database import balances_v1
from payments.selectors.balances import unapplied_credit_by_currency
from payments.selectors.figures import balances_ready, tenant_balances
from payments.selectors.verification import check_tenant_balances
from payments.services.allocations import allocation_create, allocation_reverse
from payments.services.backfill.first_write import invoice_migrate_if_needed
from payments.services.backfill.run import backfill_run
from payments.services.balances import balances_build, balances_rebuild
from payments.services.credits import credit_apply, credit_issue
from payments.services.invoices import invoice_void
from payments.services.lookups import ALL_TENANTS
from payments.services.payments import payment_record, payment_refund, payment_reject, payment_verify
from tests.billing.factories import TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory
from tests.payments.helpers import run_concurrently

pytestmark = pytest.mark.postgres
TODAY = date(2026, 6, 15)


def kept() -> dict:
    """The balances as FIN-01 reads them: {(tenant, currency): (pending, credit)}, zeros left out."""
    assert balances_ready()
    found = {}
    for tenant in Tenant.objects.all():
        for currency, held in tenant_balances(tenant=tenant).items():
            if held["pending"] or held["credit"]:
                found[(tenant.pk, currency)] = (held["pending"], held["credit"])
    return found


def computed_live() -> dict:
    found = {}
    for tenant in Tenant.objects.all():
        pending = _pending_verification(tenant=tenant, date_range=DateRange(None, None))
        credit = unapplied_credit_by_currency(tenant=tenant)
        for currency in set(pending) | set(credit):
            if pending.get(currency, 0) or credit.get(currency, 0):
                found[(tenant.pk, currency)] = (pending.get(currency, 0), credit.get(currency, 0))
    return found


def assert_kept_exactly() -> None:
    assert kept() == computed_live()
    # every payment and credit row of the balances equals its own figure
    pending = {p.pk: p.amount_cents for p in Payment.objects.all() if _is_pending(p)}
    assert dict(BalancePayment.objects.values_list("payment_id", "pending_cents")) == pending


def _is_pending(payment: Payment) -> bool:
    return payment.verification_status == VerificationStatus.PENDING or (
        payment.verification_status is None and payment.status == "PENDING"
    )


@pytest.mark.django_db(transaction=True)
def test_every_money_operation_leaves_the_balances_equal_to_the_live_figures():
    actor = get_user_model().objects.create(username="finance", is_staff=True)
    tenant = TenantFactory(id="acme", currency="KES")
    other = TenantFactory(id="other", currency="USD")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, status="ISSUED", due_date=TODAY)
    second = MigratedInvoiceFactory(tenant=tenant, amount_cents=4_000, status="ISSUED", due_date=TODAY)
    assert kept() == {}

    pending, _ = payment_record(tenant=tenant, amount_cents=6_000, currency="KES", channel="CARD", actor=actor)
    assert kept() == {("acme", "KES"): (6_000, 0)}
    allocation_create(tenant=ALL_TENANTS, payment_id=pending.pk, invoice_id=invoice.pk, amount_cents=2_000, actor=actor)
    payment_verify(tenant=ALL_TENANTS, payment_id=pending.pk, actor=actor)
    assert kept() == {}
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=pending.pk, amount_cents=3_000, actor=actor)
    assert kept() == {("acme", "KES"): (0, 3_000)}
    applied = credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=second.pk, amount_cents=1_000, actor=actor)
    assert kept() == {("acme", "KES"): (0, 2_000)}
    allocation_reverse(tenant=ALL_TENANTS, allocation_id=applied.pk, actor=actor, reason="wrong invoice")
    assert kept() == {("acme", "KES"): (0, 3_000)}
    payment_refund(tenant=ALL_TENANTS, payment_id=pending.pk, amount_cents=1_500, actor=actor, reason="asked")
    assert_kept_exactly()
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=second.pk, amount_cents=1_000, actor=actor)
    invoice_void(tenant=ALL_TENANTS, invoice_id=second.pk, actor=actor)  # its applied credit comes back as credit
    assert_kept_exactly()

    bounced, _ = payment_record(tenant=other, amount_cents=900, currency="USD", channel="CASH", actor=actor)
    payment_verify(tenant=ALL_TENANTS, payment_id=bounced.pk, actor=actor)
    bounced_credit = credit_issue(tenant=ALL_TENANTS, payment_id=bounced.pk, amount_cents=900, actor=actor)
    assert kept()[("other", "USD")] == (0, 900)
    payment_reject(tenant=ALL_TENANTS, payment_id=bounced.pk, actor=actor, reason="bounced")
    assert ("other", "USD") not in kept()  # a credit of a rejected payment holds nothing
    assert not BalanceCredit.objects.filter(credit_id=bounced_credit.pk).exists()
    assert_kept_exactly()


@pytest.mark.django_db(transaction=True)
def test_raw_sql_writes_of_another_program_are_kept_too():
    tenant = TenantFactory(id="acme", currency="KES")
    payment = PaymentFactory(tenant=tenant, amount_cents=700, verification_status=None, status="PENDING")  # legacy
    assert kept() == {("acme", "KES"): (700, 0)}
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_payment SET amount_cents = 800 WHERE id = %s", [payment.pk])
        cursor.execute(
            "INSERT INTO payments_credit (tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, created_at) "
            "VALUES ('acme', 'KES', 300, %s, 'raw', false, now()) RETURNING id", [payment.pk],
        )
        credit_id = cursor.fetchone()[0]
    assert kept() == {("acme", "KES"): (800, 300)}
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_payment SET verification_status = 'REJECTED' WHERE id = %s", [payment.pk])
    assert kept() == {}
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_payment SET verification_status = 'VERIFIED' WHERE id = %s", [payment.pk])
        cursor.execute("UPDATE payments_credit SET amount_cents = 350 WHERE id = %s", [credit_id])
    assert kept() == {("acme", "KES"): (0, 350)}
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM payments_credit WHERE id = %s", [credit_id])
        cursor.execute("UPDATE payments_payment SET verification_status = 'PENDING' WHERE id = %s", [payment.pk])
    assert kept() == {("acme", "KES"): (800, 0)}
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM payments_payment WHERE id = %s", [payment.pk])
    assert kept() == {} and not BalancePayment.objects.exists() and not BalanceCredit.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_payment_writes_of_one_tenant_all_commit_on_different_slots_and_add_up():
    actor = get_user_model().objects.create(username="finance", is_staff=True)
    tenant = TenantFactory(id="acme", currency="KES")
    payments = [PaymentFactory(tenant=tenant, amount_cents=1_000, verification_status=VerificationStatus.PENDING).pk
                for _ in range(8)]

    def write(i: int):
        if i % 2:
            return payment_verify(tenant=ALL_TENANTS, payment_id=payments[i], actor=actor)
        return payment_record(tenant=tenant, amount_cents=100 + i, currency="KES", channel="CARD", actor=actor)

    results = run_concurrently(8, write)
    assert not [result for result in results if isinstance(result, Exception)]
    assert kept() == {("acme", "KES"): (4 * 1_000 + 100 + 102 + 104 + 106, 0)}
    assert_kept_exactly()
    # the commits spread over the slots instead of queueing on one row
    assert TenantBalance.objects.filter(tenant=tenant).count() > 1
    assert set(TenantBalance.objects.values_list("slot", flat=True)) <= set(range(BALANCE_SLOTS))


def test_the_upkeep_and_the_model_agree_on_the_slots():
    assert balances_v1.SLOTS == BALANCE_SLOTS


@pytest.mark.django_db(transaction=True)
def test_backfill_and_first_write_migration_keep_the_balances():
    legacy_seed(tenant_id="rcme-dev", invoices=120, seed=3)
    assert_kept_exactly()  # legacy PENDING payments count as pending before the backfill maps them
    legacy_ids = list(Tenant.objects.get(pk="rcme-dev").invoices.order_by("id").values_list("id", flat=True)[:5])
    for invoice_id in legacy_ids:
        with transaction.atomic():
            invoice_migrate_if_needed(invoice_id=invoice_id)
    assert_kept_exactly()
    backfill_run(batch_size=40)
    assert Credit.objects.exists()
    assert_kept_exactly()


@pytest.fixture
def books(staff):
    tenant = TenantFactory(id="acme", currency="KES")
    other = TenantFactory(id="other", currency="USD")
    for number, owner in enumerate([tenant, tenant, other, tenant]):
        invoice = MigratedInvoiceFactory(tenant=owner, currency=owner.currency, amount_cents=5_000, status="ISSUED",
                                         due_date=TODAY - timedelta(days=10 * number))
        payment = PaymentFactory(tenant=owner, currency=owner.currency, amount_cents=7_000)
        allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=4_000, actor=staff)
        credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_000 + number, actor=staff)
        PaymentFactory(tenant=owner, currency=owner.currency, amount_cents=300 + number,
                       verification_status=VerificationStatus.PENDING)
    return tenant


@pytest.mark.django_db
@pytest.mark.parametrize("period", Period.NAMED)
@pytest.mark.parametrize("scope", ["acme", None])
def test_fin01_from_the_balances_is_the_live_document(books, monkeypatch, period, scope):
    tenant = books if scope else None
    from_balances = finance_summary(tenant=tenant, period=period, today=TODAY)
    assert from_balances["currencies"]["KES"]["unappliedCreditCents"] == 1_000 + 1_001 + 1_003
    monkeypatch.setattr(finance, "balances_ready", lambda: False)
    assert from_balances == finance_summary(tenant=tenant, period=period, today=TODAY)


@pytest.mark.django_db
def test_a_build_in_progress_makes_readers_compute_live_and_an_interrupted_build_resumes(books, monkeypatch):
    expected = kept()
    summary = finance_summary(tenant=None, period=Period.ALL_TIME, today=TODAY)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE payments_balancepayment, payments_balancecredit, payments_tenantbalance, "
                       "payments_tenantbalancebuild")
    TenantBalanceBuild.objects.create()
    assert not balances_ready()
    assert finance_summary(tenant=None, period=Period.ALL_TIME, today=TODAY) == summary  # computed live

    class Killed(Exception):
        pass

    calls = []
    real_execute = connection.cursor().__class__.execute

    def kill_on_second_batch(self, sql, params=None):
        if "pay10_balances_refresh" in str(sql):
            calls.append(sql)
            if len(calls) == 2:
                raise Killed
        return real_execute(self, sql, params)

    monkeypatch.setattr(connection.cursor().__class__, "execute", kill_on_second_batch)
    with pytest.raises(Killed):
        balances_build(batch_size=1)
    monkeypatch.undo()
    build = TenantBalanceBuild.objects.get()
    assert 0 < build.cursor_payment_id < build.upper_payment_id and not balances_ready()
    assert balances_build(batch_size=3)
    assert kept() == expected == computed_live()
    assert finance_summary(tenant=None, period=Period.ALL_TIME, today=TODAY) == summary
    assert not balances_build()  # done: nothing more to do
    assert balances_rebuild(batch_size=2) and kept() == expected


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["acme", None])
def test_verify_names_drifted_balances_and_the_rebuild_command_mends_them(books, scope):
    tenant = books if scope else None
    assert check_tenant_balances(tenant=tenant).ok
    assert "2 tenant and currency pair(s)" in check_tenant_balances().explanation
    with connection.cursor() as cursor:  # drift no writer of the ledger could cause
        cursor.execute("UPDATE payments_tenantbalance SET unapplied_credit_cents = unapplied_credit_cents + 7 "
                       "WHERE id = (SELECT min(id) FROM payments_tenantbalance WHERE tenant_id = 'acme')")
        cursor.execute("UPDATE payments_tenantbalance SET pending_verification_cents = pending_verification_cents - 1 "
                       "WHERE id = (SELECT min(id) FROM payments_tenantbalance WHERE tenant_id = 'other')")
    drifted = check_tenant_balances(tenant=tenant)
    assert not drifted.ok and "--only balances" in drifted.explanation
    acme = next(example for example in drifted.examples if example["tenant_id"] == "acme")
    assert acme["stored_credit_cents"] == acme["live_credit_cents"] + 7
    assert acme["stored_pending_cents"] == acme["live_pending_cents"] == 300 + 301 + 303
    assert drifted.count == (1 if scope else 2)
    out = StringIO()
    call_command("pay10_rebuild_figures", "--only", "balances", stdout=out)
    assert out.getvalue() == "Tenant balances built\n"
    assert check_tenant_balances().ok and kept() == computed_live()


@pytest.mark.django_db
def test_verify_leaves_the_balances_alone_while_a_build_runs_and_the_command_resumes_it(books):
    expected = kept()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE payments_balancepayment, payments_balancecredit, payments_tenantbalance")
    TenantBalanceBuild.objects.create()
    absent = check_tenant_balances()
    assert absent.ok and absent.explanation.startswith("no tenant balances")
    out = StringIO()
    call_command("pay10_rebuild_figures", "--resume", stdout=out)
    assert out.getvalue() == "Tenant balances built\n"  # only the build that was pending
    assert not TenantBalanceBuild.objects.exists() and kept() == expected
    assert check_tenant_balances().ok


@pytest.mark.django_db
def test_a_transaction_reads_its_own_writes(books):
    before = kept()[("acme", "KES")]
    PaymentFactory(tenant=books, amount_cents=55, verification_status=VerificationStatus.PENDING)
    assert kept()[("acme", "KES")] == (before[0] + 55, before[1])


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["ISSUED", "OVERDUE", "PAID"])
def test_fin02_status_pages_past_the_middle_read_from_the_older_end_and_match_the_live_pages(tenant, staff, monkeypatch, status):
    for number in range(12):  # 6 OVERDUE, 3 PAID, 3 ISSUED
        invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000, status="ISSUED",
                                         due_date=TODAY + timedelta(days=5 if number % 2 else -5))
        if number % 4 == 1:
            payment = PaymentFactory(tenant=tenant, amount_cents=1_000)
            allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=1_000, actor=staff)
    pages = [finance.invoice_page(tenant=tenant, page=page, page_size=1, status=status, today=TODAY) for page in range(1, 8)]
    assert pages[0]["count"] >= 3  # some pages lie past the middle
    monkeypatch.setattr(finance, "figures_ready", lambda: False)
    assert pages == [finance.invoice_page(tenant=tenant, page=page, page_size=1, status=status, today=TODAY) for page in range(1, 8)]
