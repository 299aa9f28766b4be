"""The Django admin: finance dashboard, read-only money pages, verify/reject actions, bounded queries."""
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from billing.admin_views import ERROR_UNKNOWN_TENANT
from billing.models import Invoice
from billing.selectors.admin_charts import aging_bar_chart_svg, cents_display
from billing.selectors.finance import Period, finance_summary
from payments.admin import MESSAGE_REASON_REQUIRED, MESSAGE_REJECTED, MESSAGE_VERIFIED
from payments.models import AllocationReversal, AuditEvent, Payment, PaymentAuditLog, VerificationStatus
from payments.services.errors import ERROR_VERIFY_REJECTED
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

# Pinned query budgets: the same for a page of one row and of many (no N+1).
CHANGELIST_MAX_QUERIES = 5  # session, user, tenant filter choices, count, rows
CHANGE_PAGE_MAX_QUERIES = 7
DASHBOARD_MAX_QUERIES = 10  # session, user, tenant choices, FIN-01 (invoices, pending, three credit sums)
# and, with the read model (PostgreSQL), whether a build runs and this transaction's upkeep brought forward


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(username="finance-admin", password="pw", email="a@example.com")


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def tenant(db):
    return TenantFactory(id="rcme-dev", currency="USD")


def _audit(invoice, payment, event=AuditEvent.ALLOCATION_CREATED, amount=1_000):
    return PaymentAuditLog.objects.create(
        tenant=invoice.tenant, actor_label="someone", event_type=event, invoice=invoice, payment=payment, amount_cents=amount
    )


def _book(tenant, *, rows: int) -> Invoice:
    """`rows` invoices, each with a verified, a pending and a credit allocation, one reversal and audit rows."""
    invoice = None
    for _ in range(rows):
        invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
        # The verified payment keeps 2,000 unallocated so tests can allocate more of it.
        verified = AllocationFactory(
            invoice=invoice, amount_cents=3_000, payment=PaymentFactory(tenant=tenant, amount_cents=5_000)
        )
        AllocationFactory(
            invoice=invoice,
            amount_cents=1_000,
            payment=PaymentFactory(tenant=tenant, amount_cents=1_000, verification_status=VerificationStatus.PENDING),
        )
        credit = CreditFactory(tenant=tenant, amount_cents=2_000)
        AllocationFactory(invoice=invoice, payment=None, credit=credit, amount_cents=500)
        reversed_allocation = AllocationFactory(invoice=invoice, amount_cents=700)
        AllocationReversal.objects.create(allocation=reversed_allocation, reason="entered twice")
        _audit(invoice, verified.payment)
        _audit(invoice, reversed_allocation.payment, AuditEvent.ALLOCATION_REVERSED, 700)
    return invoice


def _figure(html: str, attribute: str, key: str, currency_section: str | None = None) -> int:
    match = re.search(rf'data-{attribute}="{re.escape(key)}" data-cents="(-?\d+)"', currency_section or html)
    assert match, f"no data-{attribute}={key} in the page"
    return int(match.group(1))


# --- Finance dashboard -------------------------------------------------------------------------


def test_admin_index_links_to_the_finance_dashboard(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert reverse("admin:billing_finance_dashboard").encode() in response.content


def test_finance_dashboard_shows_fin01_per_currency_with_an_inline_svg_chart(admin_client, tenant):
    _book(tenant, rows=2)
    InvoiceFactory(tenant=TenantFactory(id="kilimo", currency="KES"), amount_cents=4_000,
                   due_date=timezone.localdate() - timedelta(days=45))

    response = admin_client.get(reverse("admin:billing_finance_dashboard"), {"period": "ALL_TIME"})

    assert response.status_code == 200
    html = response.content.decode()
    summary = finance_summary(tenant=None, period=Period.ALL_TIME)
    sections = dict(re.findall(r'data-currency="(\w+)">(.*?)</section>', html, re.S))
    assert sorted(sections) == ["KES", "USD"]
    for currency, figures in summary["currencies"].items():
        for key in ("invoicedCents", "collectedCents", "outstandingCents", "overdueCents", "pendingVerificationCents",
                    "unappliedCreditCents"):
            assert _figure(html, "figure", key, sections[currency]) == figures[key]
        for bucket, cents in figures["aging"].items():
            assert _figure(html, "aging", bucket, sections[currency]) == cents
        assert "<svg" in sections[currency]
    assert summary["currencies"]["KES"]["aging"]["31-60"] == 4_000
    assert "<script" not in html.split('id="content-main"')[1]


def test_finance_dashboard_for_one_tenant_and_a_custom_period(admin_client, tenant):
    _book(tenant, rows=1)
    other = TenantFactory(id="kilimo", currency="KES")
    InvoiceFactory(tenant=other, amount_cents=4_000)
    today = timezone.localdate()

    response = admin_client.get(
        reverse("admin:billing_finance_dashboard"),
        {"period": "", "tenant": "kilimo", "from": (today - timedelta(days=1)).isoformat(), "to": ""},
    )

    html = response.content.decode()
    assert 'data-currency="KES"' in html and 'data-currency="USD"' not in html
    expected = finance_summary(tenant=other, period=Period.CUSTOM, date_from=today - timedelta(days=1))
    assert _figure(html, "figure", "invoicedCents") == expected["currencies"]["KES"]["invoicedCents"] == 4_000


@pytest.mark.parametrize(
    ("params", "message"),
    [({"period": "FOREVER"}, "period: "), ({"tenant": "nobody"}, ERROR_UNKNOWN_TENANT.format(tenant="nobody"))],
)
def test_finance_dashboard_shows_bad_filters_as_errors(admin_client, tenant, params, message):
    response = admin_client.get(reverse("admin:billing_finance_dashboard"), params)
    assert response.status_code == 200
    assert 'id="finance-errors"' in response.content.decode()
    assert escape(message) in response.content.decode()


def test_finance_dashboard_needs_an_admin_login(db, tenant):
    response = Client().get(reverse("admin:billing_finance_dashboard"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_finance_dashboard_query_count_does_not_grow_with_the_data(admin_client, tenant, django_assert_max_num_queries):
    _book(tenant, rows=1)
    admin_client.get(reverse("admin:billing_finance_dashboard"))  # warm per-process caches before counting
    with django_assert_max_num_queries(DASHBOARD_MAX_QUERIES) as few:
        admin_client.get(reverse("admin:billing_finance_dashboard"))
    _book(tenant, rows=4)
    TenantFactory(id="kilimo", currency="KES")
    with django_assert_max_num_queries(DASHBOARD_MAX_QUERIES) as many:
        admin_client.get(reverse("admin:billing_finance_dashboard"))
    assert len(many) == len(few)


def test_aging_chart_draws_bars_proportional_to_the_buckets():
    svg = aging_bar_chart_svg(aging={"current": 100, "1-30": 50, "31-60": 0, "61-90": 0, "90+": 25}, currency="USD")
    widths = [int(width) for width in re.findall(r'<rect [^>]*width="(\d+)"', svg)]
    assert widths == [320, 160, 0, 0, 80]
    assert 'aria-label="Receivables aging in USD"' in svg


@pytest.mark.parametrize(("cents", "shown"), [(0, "0.00"), (5, "0.05"), (123456, "1,234.56"), (-1050, "-10.50")])
def test_cents_are_shown_as_amounts_without_float(cents, shown):
    assert cents_display(cents) == shown


# --- Invoices ----------------------------------------------------------------------------------


def test_invoice_list_shows_paid_pending_balance_and_todays_status(admin_client, tenant):
    invoice = _book(tenant, rows=1)
    legacy = InvoiceFactory(tenant=tenant, status="PARTIALLY_PAID", amount_cents=8_000, amount_paid_cents=2_000,
                            due_date=timezone.localdate() - timedelta(days=2))

    response = admin_client.get(reverse("admin:billing_invoice_changelist"))

    rows = {row.pk: row for row in response.context["cl"].result_list}
    assert (rows[invoice.pk].paid_cents, rows[invoice.pk].pending_cents, rows[invoice.pk].balance_cents) == (3_500, 1_000, 5_500)
    assert (rows[legacy.pk].paid_cents, rows[legacy.pk].status_today) == (2_000, "OVERDUE")
    html = response.content.decode()
    assert cents_display(5_500) in html and "OVERDUE" in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status_today": "OVERDUE"}, ["LATE-1"]),
        ({"overdue": "yes"}, ["LATE-1"]),
        ({"overdue": "no"}, ["OK-1"]),
        ({"q": "LATE"}, ["LATE-1"]),
        ({"tenant__id__exact": "kilimo"}, ["K-1"]),
    ],
)
def test_invoice_list_filters_and_search(admin_client, tenant, params, expected):
    # Stored ISSUED but past due: the filter follows today's verdict, not the stale column.
    MigratedInvoiceFactory(tenant=tenant, number="LATE-1", status="ISSUED", due_date=timezone.localdate() - timedelta(days=3))
    MigratedInvoiceFactory(tenant=tenant, number="OK-1")
    if "tenant__id__exact" in params:
        MigratedInvoiceFactory(tenant=TenantFactory(id="kilimo", currency="KES"), number="K-1")
    response = admin_client.get(reverse("admin:billing_invoice_changelist"), params)
    numbers = [row.number for row in response.context["cl"].result_list]
    assert numbers == expected


def test_invoice_page_shows_allocations_with_links_and_audit_history_read_only(admin_client, tenant):
    invoice = _book(tenant, rows=1)
    allocations = list(invoice.allocations.order_by("id"))

    response = admin_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    for allocation in allocations:
        if allocation.payment_id:
            assert reverse("admin:payments_payment_change", args=[allocation.payment_id]) in html
        else:
            assert reverse("admin:payments_credit_change", args=[allocation.credit_id]) in html
    assert "reversed " in html and "entered twice" in html
    assert AuditEvent.ALLOCATION_REVERSED in html
    assert cents_display(3_500) in html and cents_display(5_500) in html  # paid, balance
    assert 'name="_save"' not in html
    assert 'name="allocations-0-amount_cents"' not in html  # shown, not editable


def test_invoices_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, tenant):
    invoice = InvoiceFactory(tenant=tenant)
    assert admin_client.get(reverse("admin:billing_invoice_add")).status_code == 403
    assert admin_client.get(reverse("admin:billing_invoice_delete", args=[invoice.pk])).status_code == 403
    response = admin_client.post(reverse("admin:billing_invoice_change", args=[invoice.pk]), {"amount_cents": 1})
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.amount_cents == 10_000


# --- Query budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:billing_invoice_changelist",
        "admin:payments_payment_changelist",
        "admin:payments_credit_changelist",
        "admin:payments_paymentauditlog_changelist",
        "admin:billing_tenant_changelist",
    ],
)
def test_changelist_query_count_is_the_same_for_one_row_and_many(admin_client, tenant, url_name, django_assert_max_num_queries):
    _book(tenant, rows=1)
    admin_client.get(reverse(url_name))  # warm per-process caches (content types) before counting
    with django_assert_max_num_queries(CHANGELIST_MAX_QUERIES) as one:
        assert admin_client.get(reverse(url_name)).status_code == 200
    _book(TenantFactory(id="kilimo", currency="KES"), rows=5)
    with django_assert_max_num_queries(CHANGELIST_MAX_QUERIES) as many:
        assert admin_client.get(reverse(url_name)).status_code == 200
    assert len(many) == len(one)


def _change_page_objects(invoice):
    allocation = invoice.allocations.filter(payment__isnull=False).order_by("id").first()
    credit_allocation = invoice.allocations.filter(credit__isnull=False).first()
    return {
        "admin:billing_invoice_change": invoice.pk,
        "admin:payments_payment_change": allocation.payment_id,
        "admin:payments_credit_change": credit_allocation.credit_id,
        "admin:payments_paymentauditlog_change": PaymentAuditLog.objects.filter(invoice=invoice).first().pk,
    }


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:billing_invoice_change",
        "admin:payments_payment_change",
        "admin:payments_credit_change",
        "admin:payments_paymentauditlog_change",
    ],
)
def test_change_page_query_count_does_not_grow_with_allocations(admin_client, tenant, url_name, django_assert_max_num_queries):
    invoice = _book(tenant, rows=1)
    url = reverse(url_name, args=[_change_page_objects(invoice)[url_name]])
    admin_client.get(url)  # warm per-process caches (content types) before counting
    with django_assert_max_num_queries(CHANGE_PAGE_MAX_QUERIES) as few:
        assert admin_client.get(url).status_code == 200
    payment = Payment.objects.get(pk=invoice.allocations.filter(payment__isnull=False).order_by("id").first().payment_id)
    credit = invoice.allocations.filter(credit__isnull=False).first().credit
    for _ in range(4):
        other_invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=10_000)
        AllocationFactory(invoice=invoice, payment=PaymentFactory(tenant=tenant, amount_cents=10), amount_cents=10)
        AllocationFactory(invoice=other_invoice, payment=payment, amount_cents=10)
        AllocationFactory(invoice=other_invoice, payment=None, credit=credit, amount_cents=10)
        _audit(invoice, payment)
    with django_assert_max_num_queries(CHANGE_PAGE_MAX_QUERIES) as many:
        assert admin_client.get(url).status_code == 200
    assert len(many) == len(few)


# --- Payments: verify / reject actions ---------------------------------------------------------


def _pending_payment_on(invoice, amount_cents):
    payment = PaymentFactory(tenant=invoice.tenant, amount_cents=amount_cents, verification_status=VerificationStatus.PENDING,
                             status="PENDING")
    AllocationFactory(invoice=invoice, payment=payment, amount_cents=amount_cents)
    return payment


def _run_action(client, action, payments, **extra):
    data = {"action": action, "_selected_action": [payment.pk for payment in payments], "index": "0", **extra}
    return client.post(reverse("admin:payments_payment_changelist"), data, follow=True)


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_verify_action_verifies_through_the_service_and_the_invoice_becomes_paid(admin_client, superuser, tenant):
    invoice = MigratedInvoiceFactory(tenant=tenant, amount_cents=4_000)
    payment = _pending_payment_on(invoice, 4_000)

    response = _run_action(admin_client, "verify_payments", [payment])

    assert _messages(response) == [MESSAGE_VERIFIED.format(count=1)]
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert (payment.verification_status, payment.status, invoice.status) == ("VERIFIED", "SUCCEEDED", "PAID")
    audit = PaymentAuditLog.objects.get(payment=payment, event_type=AuditEvent.PAYMENT_VERIFIED)
    assert audit.actor == superuser


def test_reject_action_needs_a_reason(admin_client, tenant):
    payment = _pending_payment_on(MigratedInvoiceFactory(tenant=tenant), 1_000)
    response = _run_action(admin_client, "reject_payments", [payment], reason="  ")
    assert _messages(response) == [MESSAGE_REASON_REQUIRED]
    payment.refresh_from_db()
    assert payment.verification_status == VerificationStatus.PENDING


def test_reject_action_rejects_and_releases_allocations(admin_client, tenant):
    payment = _pending_payment_on(MigratedInvoiceFactory(tenant=tenant), 1_000)
    response = _run_action(admin_client, "reject_payments", [payment], reason="bounced")
    assert _messages(response) == [MESSAGE_REJECTED.format(count=1)]
    payment.refresh_from_db()
    assert payment.verification_status == VerificationStatus.REJECTED
    assert AllocationReversal.objects.filter(allocation__payment=payment).count() == 1
    assert PaymentAuditLog.objects.filter(payment=payment, event_type=AuditEvent.PAYMENT_REJECTED).exists()


def test_a_refused_verify_is_an_admin_message_not_a_500(admin_client, tenant):
    rejected = PaymentFactory(tenant=tenant, verification_status=VerificationStatus.REJECTED, status="FAILED")
    pending = _pending_payment_on(MigratedInvoiceFactory(tenant=tenant), 1_000)

    response = _run_action(admin_client, "verify_payments", [rejected, pending])

    assert response.status_code == 200
    assert _messages(response) == [
        f"Payment {rejected.pk}: {ERROR_VERIFY_REJECTED.format(id=rejected.pk)}",
        MESSAGE_VERIFIED.format(count=1),
    ]


def test_staff_without_the_change_payment_permission_get_no_verify_action(db, tenant):
    viewer = get_user_model().objects.create_user(username="viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_payment"))
    client = Client()
    client.force_login(viewer)
    payment = _pending_payment_on(MigratedInvoiceFactory(tenant=tenant), 1_000)

    response = client.get(reverse("admin:payments_payment_changelist"))
    assert response.status_code == 200
    assert "verify_payments" not in response.content.decode()
    _run_action(client, "verify_payments", [payment])
    payment.refresh_from_db()
    assert payment.verification_status == VerificationStatus.PENDING


# --- Audit log and tenants ---------------------------------------------------------------------


def test_audit_log_admin_has_no_add_change_or_delete(admin_client, superuser, tenant, rf):
    entry = _audit(MigratedInvoiceFactory(tenant=tenant), None)
    model_admin = admin.site._registry[PaymentAuditLog]
    request = rf.get("/")
    request.user = superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)
    assert admin_client.get(reverse("admin:payments_paymentauditlog_add")).status_code == 403
    assert admin_client.post(reverse("admin:payments_paymentauditlog_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    page = admin_client.get(reverse("admin:payments_paymentauditlog_change", args=[entry.pk])).content.decode()
    assert 'name="_save"' not in page
    assert PaymentAuditLog.objects.filter(pk=entry.pk).exists()


def test_tenant_currency_cannot_be_changed_once_created(admin_client, tenant):
    response = admin_client.post(
        reverse("admin:billing_tenant_change", args=[tenant.pk]), {"name": "Renamed", "currency": "EUR"}
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.name, tenant.currency) == ("Renamed", "USD")
