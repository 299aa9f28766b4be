"""The admin in a real browser: Debian's Chromium driven by Playwright against a live server.

Runbook step 7 (spot-check in the admin UI). The test fails, never skips, when Chromium is missing:
`make test` installs it (or says what to install), so a missing browser is a broken machine, not a
reason to pass.
Screenshots land in `test-artifacts/` (gitignored).
"""
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from billing.selectors.admin_charts import cents_display
from billing.selectors.finance import Period, finance_summary
from payments.admin import MESSAGE_RUNS_CONTROLLED, MESSAGE_VERIFIED
from payments.models import BackfillRun, VerificationStatus
from payments.services.backfill_control import PAUSE
from tests.billing.factories import InvoiceFactory, TenantFactory
from tests.payments.factories import AllocationFactory, CreditFactory, MigratedInvoiceFactory, PaymentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ERROR_NO_CHROMIUM = (
    f"chromium is not installed at {CHROMIUM}: run `apt-get install -y chromium` (`make test` does when root); "
    "the browser test must not be skipped"
)
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
PASSWORD = "browser-test-password"
FIGURES = ("invoicedCents", "collectedCents", "outstandingCents", "overdueCents", "pendingVerificationCents",
           "unappliedCreditCents")


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A headless Chromium page. Callers make no ORM call inside: Playwright's sync API runs its own
    event loop (and greenlets) in this thread, where Django would open connections it never closes."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(ERROR_NO_CHROMIUM)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def books():
    """A migrated data set: paid, partly paid, pending-covered and legacy invoices, a credit, two currencies."""
    tenant = TenantFactory(id="rcme-dev", currency="USD")
    today = timezone.localdate()
    partly_paid = MigratedInvoiceFactory(tenant=tenant, number="INV-PART", amount_cents=12_000,
                                         due_date=today - timedelta(days=20))
    AllocationFactory(invoice=partly_paid, amount_cents=4_500)
    awaiting = MigratedInvoiceFactory(tenant=tenant, number="INV-PEND", amount_cents=8_000)
    pending_payment = PaymentFactory(tenant=tenant, amount_cents=8_000, verification_status=VerificationStatus.PENDING,
                                     status="PENDING", reference="bank-ref-42")
    AllocationFactory(invoice=awaiting, payment=pending_payment, amount_cents=8_000)
    InvoiceFactory(tenant=tenant, number="INV-LEGACY", status="PARTIALLY_PAID", amount_cents=5_000, amount_paid_cents=1_000)
    CreditFactory(tenant=tenant, amount_cents=750)
    InvoiceFactory(tenant=TenantFactory(id="kilimo", currency="KES"), number="K-1", amount_cents=90_000,
                   due_date=today - timedelta(days=95))
    get_user_model().objects.create_superuser(username="finance", email="finance@example.com", password=PASSWORD)
    backfill_run = BackfillRun.objects.create(batch_size=1000, upper_invoice_id=9_000, cursor_invoice_id=3_000, counts={
        "shard": "1/2",
        "console": {"invoices": {"done": 1_500, "total": 4_500}, "payments": {"done": 0, "total": None},
                    "batchSize": 1_200, "lastBatchSeconds": 0.91, "rowsPerSecond": 1_310.0, "etaSeconds": 2_290,
                    "heartbeatAt": timezone.now().isoformat(),
                    "waiting": "1 transaction(s) open longer than 300 s (at most 0 allowed)"},
    })
    return {"partly_paid": partly_paid, "awaiting": awaiting, "pending_payment": pending_payment,
            "backfill_run": backfill_run}


def _invoice_row(page: Page, number: str):
    return page.locator("#result_list tbody tr").filter(has=page.locator("th.field-number", has_text=number))


def test_finance_spot_check_in_the_admin(live_server, books):
    expected = finance_summary(tenant=None, period=Period.ALL_TIME)
    payment = books["pending_payment"]
    with chromium_page() as page:
        _spot_check(page, live_server.url, expected, payment)
        _backfill_console(page, live_server.url, books["backfill_run"].pk)
    books["awaiting"].refresh_from_db()
    assert books["awaiting"].status == "PAID"
    books["backfill_run"].refresh_from_db()
    assert books["backfill_run"].state == "PAUSED"


def _spot_check(page: Page, base_url: str, expected: dict, payment) -> None:
    """Runbook step 7 in the browser: dashboard = FIN-01, invoice list and page, verify a payment."""
    # Log in.
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "finance")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#finance-dashboard-link")).to_be_visible()

    # Finance dashboard: every figure equals FIN-01's, per currency, with the aging chart drawn.
    page.click("#finance-dashboard-link a >> nth=0")
    expect(page.locator("h1")).to_have_text("Finance dashboard")
    page.screenshot(path=ARTIFACTS / "finance-dashboard.png", full_page=True)
    for currency, figures in expected["currencies"].items():
        section = page.locator(f'section[data-currency="{currency}"]')
        for key in FIGURES:
            expect(section.locator(f'td[data-figure="{key}"]')).to_have_text(cents_display(figures[key]))
        for bucket, cents in figures["aging"].items():
            expect(section.locator(f'td[data-aging="{bucket}"]')).to_have_text(cents_display(cents))
        expect(section.locator("svg.aging-chart rect")).to_have_count(5)
    assert expected["currencies"]["USD"]["pendingVerificationCents"] == 8_000

    # Invoice list: paid, balance and today's status per row.
    page.goto(f"{base_url}/admin/billing/invoice/")
    page.screenshot(path=ARTIFACTS / "invoice-list.png", full_page=True)
    row = _invoice_row(page, "INV-PART")
    expect(row.locator("td.field-paid")).to_have_text(cents_display(4_500))
    expect(row.locator("td.field-balance")).to_have_text(cents_display(7_500))
    expect(row.locator("td.field-status_today")).to_have_text("OVERDUE")
    legacy = _invoice_row(page, "INV-LEGACY")
    expect(legacy.locator("td.field-paid")).to_have_text(cents_display(1_000))
    awaiting_row = _invoice_row(page, "INV-PEND")
    expect(awaiting_row.locator("td.field-pending")).to_have_text(cents_display(8_000))
    expect(awaiting_row.locator("td.field-balance")).to_have_text(cents_display(0))
    expect(awaiting_row.locator("td.field-status_today")).to_have_text("ISSUED")

    # One invoice: its money and its allocations, linking to the payment.
    awaiting_row.locator("th.field-number a").click()
    expect(page.locator(".field-paid .readonly")).to_have_text(cents_display(0))
    expect(page.locator(".field-pending .readonly")).to_have_text(cents_display(8_000))
    allocations = page.locator("#allocations-group")
    expect(allocations.locator(f'a[href="/admin/payments/payment/{payment.pk}/change/"]')).to_have_count(1)
    expect(allocations).to_contain_text("active")
    page.screenshot(path=ARTIFACTS / "invoice-page.png", full_page=True)

    # Verify the pending payment through the admin action; the invoice becomes PAID.
    page.goto(f"{base_url}/admin/payments/payment/?verification_status__exact=PENDING")
    page.check(f'input[name="_selected_action"][value="{payment.pk}"]')
    page.select_option('select[name="action"]', "verify_payments")
    page.click('button[name="index"]')
    expect(page.locator("ul.messagelist li.success")).to_have_text(MESSAGE_VERIFIED.format(count=1))
    page.screenshot(path=ARTIFACTS / "payment-verified.png", full_page=True)

    page.goto(f"{base_url}/admin/billing/invoice/")
    awaiting_row = _invoice_row(page, "INV-PEND")
    expect(awaiting_row.locator("td.field-status_today")).to_have_text("PAID")
    expect(awaiting_row.locator("td.field-paid")).to_have_text(cents_display(8_000))
    page.screenshot(path=ARTIFACTS / "invoice-list-after-verify.png", full_page=True)


def _backfill_console(page: Page, base_url: str, run_id: int) -> None:
    """The operator's console: a running shard's progress and why it waits; pause it."""
    page.goto(f"{base_url}/admin/payments/backfillrun/")
    row = page.locator("#result_list tbody tr").filter(has=page.locator(f'input[value="{run_id}"]'))
    expect(row.locator("td.field-shard")).to_have_text("1/2")
    expect(row.locator("td.field-invoices_done")).to_have_text("1,500 of 4,500 (33%)")
    expect(row.locator("td.field-rate")).to_have_text("1,310 rows/s")
    expect(row.locator("td.field-eta")).to_have_text("0:38:10")
    expect(row.locator("td.field-activity")).to_have_text(
        "waiting: 1 transaction(s) open longer than 300 s (at most 0 allowed)")
    page.screenshot(path=ARTIFACTS / "backfill-runs.png", full_page=True)

    page.check(f'input[name="_selected_action"][value="{run_id}"]')
    page.select_option('select[name="action"]', "pause_runs")
    page.click('button[name="index"]')
    expect(page.locator("ul.messagelist li.success")).to_have_text(MESSAGE_RUNS_CONTROLLED[PAUSE].format(runs=run_id))
    row = page.locator("#result_list tbody tr").filter(has=page.locator(f'input[value="{run_id}"]'))
    expect(row.locator("td.field-state")).to_have_text("Paused")
    page.screenshot(path=ARTIFACTS / "backfill-run-paused.png", full_page=True)
