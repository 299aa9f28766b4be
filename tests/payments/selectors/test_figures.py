"""The FIN-01/FIN-02 read model (`InvoiceFigures`, `InvoiceRollup`), kept by PostgreSQL at commit.

Whoever writes (the services, raw SQL of another program, many threads at once), after the commit
the read model equals the figures computed live from the allocations, and FIN-01/FIN-02 read from
it give the documents the live computation gives.
"""
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from billing.models import Invoice
from billing.selectors import finance
from billing.selectors.finance import Period, finance_summary, invoice_page
from payments.database import figures_v3
from payments.domain import status as engine
from payments.migrations import _pay10_figures
from payments.models import (
    INVOICE_BLOCK_BITS,
    FiguresState,
    InvoiceBlock,
    InvoiceDueRollup,
    InvoiceFigures,
    InvoiceFiguresBuild,
    InvoiceRollup,
    VerificationStatus,
)
from payments.selectors.figures import figures_ready, status_condition, status_of_state
from payments.selectors.verification import check_read_model
from payments.services.lookups import ALL_TENANTS
from payments.services.allocations import allocation_create, allocation_reverse
from payments.services.credits import credit_apply, credit_issue
from payments.services.figures import figures_build, figures_rebuild
from payments.services.invoices import invoice_void
from payments.services.payments import payment_reject, payment_verify
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import MigratedInvoiceFactory, PaymentFactory
from tests.payments.helpers import run_concurrently

TODAY = date(2026, 6, 15)


def live(monkeypatch):
    """Make the FIN readers compute live (as on a database without the read model)."""
    monkeypatch.setattr(finance, "figures_ready", lambda: False)


def figures_of(invoice_id: int) -> tuple:
    row = InvoiceFigures.objects.get(pk=invoice_id)
    return row.state, row.paid_cents, row.pending_cents


def rollup_totals() -> dict:
    totals: dict = {}
    for row in InvoiceRollup.objects.filter(invoice_count__gt=0):
        key = (row.tenant_id, row.state)
        count, amount, paid = totals.get(key, (0, 0, 0))
        totals[key] = (count + row.invoice_count, amount + row.amount_cents, paid + row.paid_cents)
    return totals


# The engine's rules, read through the states -------------------------------------------------------------
@pytest.mark.parametrize("state", FiguresState.values)
@pytest.mark.parametrize("due", [None, TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=9)])
def test_status_of_a_state_is_the_engines_verdict(state, due):
    amount, paid = {"PAID": (5, 5), "PART": (5, 2), "UNPAID": (5, 0)}.get(state, (5, 0))
    current = state if state in ("DRAFT", "VOID") else engine.ISSUED
    expected = engine.invoice_status(current_status=current, amount_cents=amount, paid_cents=paid, due_date=due, today=TODAY)
    assert status_of_state(state, due, TODAY) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("status", engine.ALL_STATUSES)
def test_status_condition_selects_exactly_the_states_and_due_dates_with_that_verdict(status, tenant):
    figures = []
    for number, (state, due) in enumerate(
        (state, due)
        for state in FiguresState.values
        for due in (None, TODAY - timedelta(days=3), TODAY, TODAY + timedelta(days=3))
    ):
        figures.append(
            InvoiceFigures(
                invoice_id=10_000 + number, tenant=tenant, currency="KES", state=state, issue_day=TODAY,
                due_date=due, amount_cents=1, paid_cents=0, pending_cents=0,
            )
        )
    InvoiceFigures.objects.bulk_create(figures)
    chosen = set(InvoiceFigures.objects.filter(status_condition(status, today=TODAY, due_field="due_date")).values_list("pk", flat=True))
    assert chosen == {f.invoice_id for f in figures if status_of_state(f.state, f.due_date, TODAY) == status}


# Kept at commit ---------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_committed_operation_leaves_the_read_model_equal_to_the_allocations():
    actor = get_user_model().objects.create(username="finance", is_staff=True)
    tenant = TenantFactory(id="acme", currency="KES")
    due_past, due_future = TODAY - timedelta(days=40), TODAY + timedelta(days=40)
    first = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000, status="ISSUED", due_date=due_past)
    second = MigratedInvoiceFactory(tenant=tenant, amount_cents=4_000, status="ISSUED", due_date=due_future)
    legacy = InvoiceFactory(tenant=tenant, amount_cents=3_000, status="PARTIALLY_PAID", amount_paid_cents=1_000)
    assert figures_of(first.pk) == ("UNPAID", 0, 0)
    assert figures_of(legacy.pk) == ("PART", 1_000, 0)  # not migrated: its legacy paid figure

    pending = PaymentFactory(tenant=tenant, amount_cents=6_000, verification_status=VerificationStatus.PENDING)
    allocation_create(tenant=ALL_TENANTS, payment_id=pending.pk, invoice_id=first.pk, amount_cents=6_000, actor=actor)
    assert figures_of(first.pk) == ("UNPAID", 0, 6_000)
    payment_verify(tenant=ALL_TENANTS, payment_id=pending.pk, actor=actor)
    assert figures_of(first.pk) == ("PART", 6_000, 0)

    verified = PaymentFactory(tenant=tenant, amount_cents=9_000)
    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=verified.pk, invoice_id=second.pk, amount_cents=4_000, actor=actor)
    assert figures_of(second.pk) == ("PAID", 4_000, 0)
    allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation.pk, actor=actor, reason="wrong invoice")
    assert figures_of(second.pk) == ("UNPAID", 0, 0)
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=verified.pk, amount_cents=2_500, actor=actor)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=second.pk, amount_cents=2_500, actor=actor)
    assert figures_of(second.pk) == ("PART", 2_500, 0)

    payment_reject(tenant=ALL_TENANTS, payment_id=pending.pk, actor=actor, reason="bounced")
    assert figures_of(first.pk) == ("UNPAID", 0, 0)
    invoice_void(tenant=ALL_TENANTS, invoice_id=second.pk, actor=actor)
    assert figures_of(second.pk) == ("VOID", 0, 0)
    allocation_create(tenant=ALL_TENANTS, payment_id=verified.pk, invoice_id=legacy.pk, amount_cents=500, actor=actor)
    assert figures_of(legacy.pk) == ("PART", 1_500, 0)  # migrated first, then paid more

    assert rollup_totals() == {
        ("acme", "UNPAID"): (1, 10_000, 0),
        ("acme", "VOID"): (1, 4_000, 0),
        ("acme", "PART"): (1, 3_000, 1_500),
    }
    assert check_read_model().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_raw_sql_writes_of_another_program_are_kept_too():
    tenant = TenantFactory(id="acme", currency="KES")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_invoice (tenant_id, number, amount_cents, currency, status, amount_paid_cents, "
            "due_date, created_at, updated_at) VALUES ('acme', 'RAW-1', 7000, 'KES', 'PAID', 0, NULL, %s, %s) RETURNING id",
            [datetime(2026, 3, 1, 23, 30, tzinfo=dt_timezone.utc)] * 2,
        )
        invoice_id = cursor.fetchone()[0]
    row = InvoiceFigures.objects.get(pk=invoice_id)
    assert (row.state, row.paid_cents, row.issue_day, row.due_date) == ("PAID", 7_000, date(2026, 3, 1), None)

    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_invoice SET status = 'ISSUED', amount_paid_cents = 2000, due_date = %s WHERE id = %s", [TODAY, invoice_id])
    row = InvoiceFigures.objects.get(pk=invoice_id)
    assert (row.state, row.paid_cents, row.due_date) == ("PART", 2_000, TODAY)
    assert rollup_totals() == {("acme", "PART"): (1, 7_000, 2_000)}

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_invoice WHERE id = %s", [invoice_id])
    assert not InvoiceFigures.objects.exists()
    assert rollup_totals() == {}
    assert check_read_model().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_the_read_model_as_it_was():
    tenant = TenantFactory(id="acme", currency="KES")
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000, status="ISSUED")
    with pytest.raises(RuntimeError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(amount_cents=9_000)
        raise RuntimeError("rolled back")
    assert InvoiceFigures.objects.get(pk=invoice.pk).amount_cents == 5_000
    assert check_read_model().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_on_one_rollup_row_add_up_exactly():
    actor = get_user_model().objects.create(username="finance", is_staff=True)
    tenant = TenantFactory(id="acme", currency="KES")
    issued = datetime(2026, 5, 1, 9, tzinfo=dt_timezone.utc)
    # Same tenant, currency, issue day and due day: every payment moves the same rollup rows.
    invoices = [
        MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000, status="ISSUED", issued_at=issued, due_date=TODAY).pk
        for _ in range(12)
    ]
    payments = [PaymentFactory(tenant=tenant, amount_cents=1_000).pk for _ in range(12)]

    def pay(i: int):
        return allocation_create(tenant=ALL_TENANTS, payment_id=payments[i], invoice_id=invoices[i], amount_cents=400 + 600 * (i % 2), actor=actor)

    results = run_concurrently(12, pay)
    assert not [result for result in results if isinstance(result, Exception)]
    assert rollup_totals() == {("acme", "PART"): (6, 6_000, 2_400), ("acme", "PAID"): (6, 6_000, 6_000)}
    assert check_read_model().ok


# Read the same as live ----------------------------------------------------------------------------------------
@pytest.fixture
def mixed_books(staff, tenant):
    """Invoices in every state, due in the past, the future or never, some not migrated, across two
    issue months, with pending, verified and rejected money and credit."""
    other = TenantFactory(id="other", currency="USD")
    day = datetime(2026, 5, 20, 12, tzinfo=dt_timezone.utc)
    for number, (status, due, issued) in enumerate(
        [
            ("ISSUED", TODAY - timedelta(days=95), day),
            ("ISSUED", TODAY - timedelta(days=45), day - timedelta(days=40)),
            ("ISSUED", TODAY + timedelta(days=10), None),
            ("ISSUED", None, day),
            ("DRAFT", TODAY - timedelta(days=5), None),
            ("VOID", TODAY - timedelta(days=5), day),
            ("ISSUED", TODAY - timedelta(days=1), day),
        ]
    ):
        invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=1_000 * (number + 1), status=status, due_date=due, issued_at=issued)
        if status == "ISSUED" and number % 2 == 0:
            payment = PaymentFactory(tenant=tenant, amount_cents=800)
            allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=800, actor=staff)
        if number == 1:
            pending = PaymentFactory(tenant=tenant, amount_cents=300, verification_status=VerificationStatus.PENDING)
            allocation_create(tenant=ALL_TENANTS, payment_id=pending.pk, invoice_id=invoice.pk, amount_cents=300, actor=staff)
    InvoiceFactory(tenant=tenant, amount_cents=2_500, status="PAID", due_date=TODAY - timedelta(days=70))  # legacy
    InvoiceFactory(tenant=tenant, amount_cents=2_500, status="OVERDUE", amount_paid_cents=900, due_date=TODAY - timedelta(days=70))
    MigratedInvoiceFactory(tenant=other, currency="USD", amount_cents=0, status="ISSUED", due_date=TODAY - timedelta(days=3))
    MigratedInvoiceFactory(tenant=other, currency="USD", amount_cents=4_000, status="ISSUED", due_date=TODAY - timedelta(days=3))
    return tenant


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("period", Period.NAMED)
@pytest.mark.parametrize("scope", ["acme", None])
def test_fin01_from_the_rollup_is_the_live_document(mixed_books, monkeypatch, period, scope):
    assert figures_ready()
    tenant = mixed_books if scope else None
    from_rollup = finance_summary(tenant=tenant, period=period, today=TODAY)
    live(monkeypatch)
    assert from_rollup == finance_summary(tenant=tenant, period=period, today=TODAY)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("status", [None, *engine.ALL_STATUSES])
def test_fin02_from_the_read_model_is_the_live_page(mixed_books, monkeypatch, status):
    assert figures_ready()
    pages = [invoice_page(tenant=mixed_books, page=page, page_size=2, status=status, today=TODAY) for page in (1, 2, 3, 9)]
    live(monkeypatch)
    assert pages == [invoice_page(tenant=mixed_books, page=page, page_size=2, status=status, today=TODAY) for page in (1, 2, 3, 9)]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("page_size", [1, 2, 3, 50])
def test_fin02_pages_through_the_id_blocks_like_the_live_page(tenant, monkeypatch, page_size):
    other = TenantFactory(id="other", currency="KES")
    # Ids spread over several blocks of 1,024, some blocks empty or only another tenant's.
    for invoice_id in (3, 1_023, 1_024, 1_025, 2_100, 5_000, 5_001, 9_999, 10_240):
        InvoiceFactory(id=invoice_id, tenant=tenant)
    for invoice_id in (1_030, 3_000, 10_241):
        InvoiceFactory(id=invoice_id, tenant=other)
    pages = range(1, 9 // page_size + 3)
    from_blocks = [invoice_page(tenant=tenant, page=page, page_size=page_size, today=TODAY) for page in pages]
    live(monkeypatch)
    assert from_blocks == [invoice_page(tenant=tenant, page=page, page_size=page_size, today=TODAY) for page in pages]
    assert [row["id"] for page in from_blocks for row in page["results"]] == [
        10_240, 9_999, 5_001, 5_000, 2_100, 1_025, 1_024, 1_023, 3
    ]


def test_the_upkeep_and_the_readers_agree_on_the_block_size():
    assert _pay10_figures.BUCKET_BITS == INVOICE_BLOCK_BITS


# Built, rebuilt, resumed, checked -------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db
def test_an_interrupted_build_resumes_and_readers_compute_live_meanwhile(mixed_books):
    assert figures_ready()  # the fixture's upkeep first, then start from nothing
    InvoiceFigures.objects.all().delete()
    InvoiceRollup.objects.all().delete()
    InvoiceDueRollup.objects.all().delete()
    InvoiceBlock.objects.all().delete()
    InvoiceFiguresBuild.objects.create()
    assert not figures_ready()
    absent = check_read_model()  # while building there is nothing to compare
    assert absent.ok and absent.explanation.startswith("no FIN-01/FIN-02 read model")

    class Killed(Exception):
        pass

    def kill_after_first_batch(cursor, upper):
        raise Killed

    with pytest.raises(Killed):
        figures_build(batch_size=3, progress=kill_after_first_batch)
    build = InvoiceFiguresBuild.objects.get()
    assert 0 < build.cursor_invoice_id < build.upper_invoice_id
    assert InvoiceFigures.objects.count() == 3

    out = StringIO()
    call_command("pay10_rebuild_figures", "--resume", "--batch-size", "4", stdout=out)
    assert "Read model built" in out.getvalue()
    assert figures_ready() and not InvoiceFiguresBuild.objects.exists()
    assert InvoiceFigures.objects.count() == Invoice.objects.count()
    assert check_read_model().ok


def read_model_rows() -> dict:
    """Every row of the read model that counts (a rollup or block row at zero is as good as none)."""
    queries = {
        "figures": "SELECT invoice_id, tenant_id, currency, state, issue_day, due_date, amount_cents, paid_cents, "
        "pending_cents FROM payments_invoicefigures ORDER BY invoice_id",
        "rollup": "SELECT tenant_id, currency, state, issue_day, due_day, invoice_count, amount_cents, paid_cents "
        "FROM payments_invoicerollup WHERE (invoice_count, amount_cents, paid_cents) <> (0, 0, 0) ORDER BY 1, 2, 3, 4, 5",
        "due": "SELECT tenant_id, currency, state, due_day, invoice_count, amount_cents, paid_cents "
        "FROM payments_invoiceduerollup WHERE (invoice_count, amount_cents, paid_cents) <> (0, 0, 0) ORDER BY 1, 2, 3, 4",
        "blocks": "SELECT tenant_id, block, invoice_count FROM payments_invoiceblock WHERE invoice_count <> 0 ORDER BY 1, 2",
    }
    rows = {}
    with connection.cursor() as cursor:
        for name, sql in queries.items():
            cursor.execute(sql)
            rows[name] = cursor.fetchall()
    return rows


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["build", "refresh with probes forced", "refresh planned"])
def test_a_built_read_model_equals_the_one_kept_by_commits(mixed_books, staff, how):
    """The build (the refresh statement with the planner's plan, in batches) and the commit-time
    refresh on either side of `PROBE_LIMIT` write the same read model as the commits kept."""
    tenant = mixed_books
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=5_000, status="ISSUED", due_date=TODAY)
    payment = PaymentFactory(tenant=tenant, amount_cents=5_000)
    allocation = allocation_create(tenant=ALL_TENANTS, payment_id=payment.pk, invoice_id=invoice.pk, amount_cents=3_000, actor=staff)
    allocation_reverse(tenant=ALL_TENANTS, allocation_id=allocation.pk, actor=staff, reason="wrong amount")
    credit = credit_issue(tenant=ALL_TENANTS, payment_id=payment.pk, amount_cents=1_200, actor=staff)
    credit_apply(tenant=ALL_TENANTS, credit_id=credit.pk, invoice_id=invoice.pk, amount_cents=1_200, actor=staff)
    kept = read_model_rows()
    assert kept["figures"] and kept["rollup"] and kept["due"] and kept["blocks"]
    assert check_read_model().ok

    ids = list(Invoice.objects.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE payments_invoicefigures, payments_invoicerollup, payments_invoiceduerollup, payments_invoiceblock")
        if how == "build":
            InvoiceFiguresBuild.objects.create()
        else:
            if how == "refresh planned":  # ids of no invoice bring the call up to the planner's side
                ids += list(range(ids[-1] + 1, ids[-1] + 1 + figures_v3.PROBE_LIMIT))
            assert (len(ids) < figures_v3.PROBE_LIMIT) == (how == "refresh with probes forced")
            cursor.execute("SELECT pay10_figures_refresh(%s::bigint[])", [ids])
    if how == "build":
        assert figures_build(batch_size=4) == len(ids)
    assert read_model_rows() == kept
    assert check_read_model().ok


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_build_runs_the_refresh_statement_itself_whichever_function_is_installed(mixed_books):
    """On a fresh `migrate`, 0005 builds while figures v1 is installed (probes forced for any count):
    the build runs v3's refresh statement with its own plan and never calls the installed function."""
    assert figures_ready()
    kept = read_model_rows()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION pay10_figures_refresh(p_ids bigint[]) RETURNS void LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'the build called the installed refresh'; END; $$"
        )
        cursor.execute("TRUNCATE payments_invoicefigures, payments_invoicerollup, payments_invoiceduerollup, payments_invoiceblock")
    InvoiceFiguresBuild.objects.create()
    assert figures_build(batch_size=5) == Invoice.objects.count()
    assert read_model_rows() == kept


@pytest.mark.postgres
@pytest.mark.django_db
def test_verify_names_a_drifted_read_model_and_a_rebuild_mends_it(mixed_books):
    invoice = Invoice.objects.order_by("pk").first()
    assert figures_ready()  # brings the fixture's upkeep forward, so the drift below stays
    with connection.cursor() as cursor:  # drift that no writer of the ledger could cause
        cursor.execute("UPDATE payments_invoicefigures SET paid_cents = paid_cents + 1 WHERE invoice_id = %s", [invoice.pk])
        cursor.execute("UPDATE payments_invoicerollup SET invoice_count = invoice_count + 2 WHERE id = (SELECT min(id) FROM payments_invoicerollup)")
    result = check_read_model()
    assert not result.ok
    # the invoice, the two rollup rows it falls in (their paid sums no longer add up) and the bumped row
    assert result.count == 4 and "pay10_rebuild_figures" in result.explanation
    assert result.examples[0]["id"] == invoice.pk

    assert figures_rebuild(batch_size=5) == Invoice.objects.count()
    assert check_read_model().ok


@pytest.mark.django_db
def test_rebuild_command_explains_itself_on_each_database():
    if connection.vendor == "postgresql":
        with pytest.raises(CommandError, match="no interrupted build"):
            call_command("pay10_rebuild_figures", "--resume", stdout=StringIO())
    else:
        with pytest.raises(CommandError, match="PostgreSQL only"):
            call_command("pay10_rebuild_figures", stdout=StringIO())
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("pay10_rebuild_figures", "--batch-size", "0", stdout=StringIO())


@pytest.mark.django_db
def test_on_sqlite_readers_compute_live_and_verify_says_so():
    if connection.vendor == "postgresql":
        assert figures_ready()
    else:
        assert not figures_ready()
        assert check_read_model().explanation.startswith("no FIN-01/FIN-02 read model")
