"""`billing.selectors.baseline` and `manage.py pay10_baseline` (runbook Step 4)."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import InvoiceStatus
from billing.selectors.baseline import BASELINE_KIND, BASELINE_PAGE_SIZE, baseline_document
from billing.selectors.finance import Period, finance_summary, invoice_page
from payments.management.commands import pay10_baseline
from tests.billing.factories import InvoiceFactory, TenantFactory

pytestmark = [pytest.mark.django_db]

TODAY = timezone.localdate()


@pytest.fixture
def tenants():
    acme = TenantFactory(id="acme", currency="USD")
    other = TenantFactory(id="other", currency="KES")
    InvoiceFactory(tenant=acme, amount_cents=1_000, status=InvoiceStatus.PAID)
    InvoiceFactory(tenant=acme, amount_cents=2_000, status=InvoiceStatus.PAID)
    InvoiceFactory(
        tenant=acme, amount_cents=5_000, status=InvoiceStatus.ISSUED, amount_paid_cents=1_500,
        due_date=TODAY - timedelta(days=3),
    )
    InvoiceFactory(tenant=other, amount_cents=700, status=InvoiceStatus.DRAFT)
    return acme, other


def test_baseline_holds_fin01_fin02_page_and_counts_by_stored_status(tenants):
    acme, other = tenants

    document = baseline_document(today=TODAY)

    assert document["kind"] == BASELINE_KIND
    assert document["asOf"] == TODAY.isoformat()
    assert document["tenant"] is None
    assert document["fin01"] == finance_summary(tenant=None, period=Period.ALL_TIME, today=TODAY)
    assert document["fin02"] == {
        "acme": invoice_page(tenant=acme, page=1, page_size=BASELINE_PAGE_SIZE, today=TODAY),
        "other": invoice_page(tenant=other, page=1, page_size=BASELINE_PAGE_SIZE, today=TODAY),
    }
    # by STORED status: the legacy ISSUED invoice counts as ISSUED though FIN-01 shows it OVERDUE
    assert document["invoicesByStatus"] == {
        "acme": {"ISSUED": {"count": 1, "amountCents": 5_000}, "PAID": {"count": 2, "amountCents": 3_000}},
        "other": {"DRAFT": {"count": 1, "amountCents": 700}},
    }
    assert document["fin01"]["currencies"]["USD"]["byStatus"]["OVERDUE"] == {"count": 1, "amountCents": 5_000}


def test_baseline_of_one_tenant_has_only_that_tenant(tenants):
    acme, _other = tenants

    document = baseline_document(tenant=acme, today=TODAY)

    assert document["tenant"] == "acme"
    assert list(document["fin02"]) == ["acme"]
    assert list(document["invoicesByStatus"]) == ["acme"]
    assert list(document["fin01"]["currencies"]) == ["USD"]


def test_baseline_fin02_page_is_the_first_50_newest_invoices(tenants):
    acme, _other = tenants
    InvoiceFactory.create_batch(BASELINE_PAGE_SIZE, tenant=acme)

    page = baseline_document(tenant=acme, today=TODAY)["fin02"]["acme"]

    assert page["count"] == BASELINE_PAGE_SIZE + 3
    assert len(page["results"]) == BASELINE_PAGE_SIZE


def test_command_writes_the_document_as_json(tenants, tmp_path):
    out = StringIO()
    path = tmp_path / "before.json"

    call_command("pay10_baseline", "--out", str(path), "--tenant", "acme", stdout=out)

    written = json.loads(path.read_text())
    assert written["invoicesByStatus"] == baseline_document(tenant=tenants[0])["invoicesByStatus"]
    assert f"written to {path}" in out.getvalue()


def test_command_refuses_an_unknown_tenant_in_one_line(tenants, tmp_path):
    with pytest.raises(CommandError, match=r"^unknown tenant 'nobody'$"):
        call_command("pay10_baseline", "--out", str(tmp_path / "x.json"), "--tenant", "nobody")
    assert not (tmp_path / "x.json").exists()


def test_command_refuses_an_unwritable_path_in_one_line(tenants, tmp_path):
    target = tmp_path / "no-such-dir" / "x.json"

    with pytest.raises(CommandError) as error:
        call_command("pay10_baseline", "--out", str(target))

    assert str(error.value) == pay10_baseline.UNWRITABLE.format(path=target, reason="No such file or directory")
