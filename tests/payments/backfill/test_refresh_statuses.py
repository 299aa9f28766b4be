"""`pay10_refresh_statuses`: the daily refresh of stored statuses over migrated invoices."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from billing.models import Invoice
from tests.billing.factories import InvoiceFactory
from tests.payments.factories import MigratedInvoiceFactory

pytestmark = pytest.mark.django_db


def test_refresh_moves_stale_migrated_invoices_to_todays_verdict_in_batches():
    yesterday = timezone.localdate() - timedelta(days=1)
    stale = [MigratedInvoiceFactory(status="ISSUED", due_date=yesterday) for _ in range(3)]
    current = MigratedInvoiceFactory(status="ISSUED", due_date=timezone.localdate() + timedelta(days=3))
    legacy = InvoiceFactory(status="ISSUED", due_date=yesterday)
    out = StringIO()

    call_command("pay10_refresh_statuses", "--batch-size", "2", stdout=out)

    assert out.getvalue().strip().endswith(": 3 changed")
    statuses = dict(Invoice.objects.values_list("pk", "status"))
    assert [statuses[invoice.pk] for invoice in stale] == ["OVERDUE"] * 3
    assert statuses[current.pk] == "ISSUED"
    assert statuses[legacy.pk] == "ISSUED"  # not migrated: keeps its legacy status until the backfill


def test_refresh_refuses_an_unknown_tenant():
    with pytest.raises(CommandError, match="unknown tenant 'nope'"):
        call_command("pay10_refresh_statuses", "--tenant", "nope", stdout=StringIO())
