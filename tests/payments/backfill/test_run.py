"""A whole backfill run on generated legacy data: the command's output, dry run, report, re-run,
kill-and-resume, FIN-01 during the run, and the single-runner lock."""
import fcntl
import json
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billing.models import Invoice, Tenant
from billing.selectors.finance import Period, finance_summary
from payments.models import (
    Allocation,
    BackfillDeviation,
    BackfillRun,
    Credit,
    InvoiceMigration,
    Payment,
)
from payments.services import backfill
from payments.services.backfill import locks as backfill_locks
from payments.services.backfill import common as backfill_common
from payments.selectors.balances import invoices_with_balances
from payments.demo.legacy_seed import legacy_seed
from tests.payments.backfill.helpers import Crash, money_state, other_connection

pytestmark = [pytest.mark.django_db, pytest.mark.pay10_regression]

TENANT = "rcme-dev"
INVOICES = 150
BATCH = 30


def invoice_totals(tenant) -> dict:
    """FIN-01's invoice figures (unapplied credit excluded: the backfill creates credit)."""
    summary = finance_summary(tenant=tenant, period=Period.ALL_TIME)
    return {
        currency: {key: value for key, value in figures.items() if key != "unappliedCreditCents"}
        for currency, figures in summary["currencies"].items()
    }


@pytest.fixture
def seeded():
    legacy_seed(tenant_id=TENANT, invoices=INVOICES, seed=7)
    return Tenant.objects.get(pk=TENANT)


def backfill_command(*args) -> str:
    out = StringIO()
    call_command("pay10_backfill", *args, stdout=out)
    return out.getvalue()


def test_command_prints_the_runbook_summary_counted_by_legacy_status(seeded):
    by_status = {}
    for status in Invoice.objects.values_list("status", flat=True):
        by_status[status] = by_status.get(status, 0) + 1
    total = sum(by_status.values())

    output = backfill_command("--batch-size", str(BATCH))

    unpaid = total - by_status["PAID"] - by_status["PARTIALLY_PAID"]
    lines = output.splitlines()
    assert lines[:3] == [
        "Starting PAY-10 migration: Backfilling Payments and Allocations", "=" * 60, f"Found {total} total invoices"]
    assert lines[-7:] == [
        "=" * 60,
        "Migration complete!",
        f"  PAID invoices backfilled: {by_status['PAID']}",
        f"  PARTIALLY_PAID invoices backfilled: {by_status['PARTIALLY_PAID']}",
        f"  Unpaid invoices status recomputed: {unpaid}",
        f"  Total processed: {total}",
        "✓ No orphaned allocations found",
    ]
    assert any(line.startswith(f"  batch 1: {BATCH}/") for line in lines)
    assert InvoiceMigration.objects.count() == total


def test_verbose_run_names_each_invoice_with_its_legacy_status(seeded):
    out = StringIO()
    call_command("pay10_backfill", "--tenant", TENANT, verbosity=2, stdout=out)
    first = Invoice.objects.filter(tenant=seeded).order_by("pk").first()
    assert f"invoice {first.number} ..." in out.getvalue()
    assert "  Backfilling PAID invoice " in out.getvalue()


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_a_bar_with_eta(seeded):
    out = Terminal()
    call_command("pay10_backfill", "--batch-size", str(BATCH), stdout=out)
    assert f"[{'#' * 30}] {Invoice.objects.count()}/{Invoice.objects.count()} ETA 0:00:00" in out.getvalue()
    assert "  batch 1:" not in out.getvalue()
    assert "Migration complete!" in out.getvalue()


def test_rerun_creates_no_money_rows_and_reports_nothing_backfilled(seeded):
    backfill_command()
    before = money_state()

    output = backfill_command()

    assert "  Total processed: 0" in output
    assert money_state() == before


def test_dry_run_prints_the_same_summary_and_writes_nothing(seeded):
    before = money_state()
    dry = backfill_command("--dry-run")
    assert money_state() == before
    assert not BackfillRun.objects.exists()
    real = backfill_command()
    summary = lambda text: [line for line in text.splitlines() if line.startswith("  ") and "batch" not in line]  # noqa: E731
    assert summary(dry) == summary(real)


def test_report_lists_every_recorded_deviation_with_tenant_and_invoice(seeded, tmp_path):
    report = tmp_path / "report.json"
    backfill_command("--report", str(report))
    entries = json.loads(report.read_text())
    assert len(entries) == BackfillDeviation.objects.count() > 0
    assert set(entries[0]) == {"kind", "tenant", "invoiceNumber", "invoiceId", "paymentId", "legacy", "new", "detail"}
    kinds = {entry["kind"] for entry in entries}
    assert {"STATUS_CHANGED", "SHORTFALL_COVERED", "OVERPAYMENT_TO_CREDIT", "UNLINKED_PAYMENT_TO_CREDIT",
            "UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT", "CROSS_TENANT_LINK", "CURRENCY_MISMATCH",
            "INCONSISTENT_LEGACY_FIGURES"} <= kinds
    shortfall = next(entry for entry in entries if entry["kind"] == "SHORTFALL_COVERED")
    assert shortfall["invoiceNumber"] == Invoice.objects.get(pk=shortfall["invoiceId"]).number


def test_unknown_tenant_is_refused():
    with pytest.raises(CommandError, match="unknown tenant 'nope'"):
        backfill_command("--tenant", "nope")


def test_backfill_conserves_money_per_tenant(seeded):
    legacy_paid = {
        row.pk: row.paid_cents
        for row in invoices_with_balances()
    }
    succeeded = dict(Payment.objects.filter(status="SUCCEEDED").values_list("pk", "amount_cents"))
    backfill_command()
    for invoice_id, paid in legacy_paid.items():
        assert sum(Allocation.objects.filter(invoice_id=invoice_id).values_list("amount_cents", flat=True)) == paid
    mismatched = set(BackfillDeviation.objects.filter(kind="CURRENCY_MISMATCH").values_list("payment_id", flat=True))
    for payment_id, amount in succeeded.items():
        placed = sum(Allocation.objects.filter(payment_id=payment_id).values_list("amount_cents", flat=True))
        placed += sum(Credit.objects.filter(source_payment_id=payment_id).values_list("amount_cents", flat=True))
        assert placed == (0 if payment_id in mismatched else amount), payment_id


@pytest.mark.parametrize(
    "crashes",
    [
        [("batch-start", 1)],
        [("mid-batch", 2)],
        [("batch-end", 1), ("mid-batch", 3), ("batch-end", 2)],
        [("mid-batch", 7)],  # the payment pass (after ceil(153 / 30) = 6 invoice batches)
    ],
    ids=["first-boundary", "mid-batch", "three-kills", "payment-pass"],
)
def test_run_killed_anywhere_and_resumed_ends_like_an_uninterrupted_run(seeded, monkeypatch, crashes):
    backfill.backfill_run(batch_size=BATCH)
    uninterrupted = money_state()
    backfill.backfill_reverse()
    assert not Allocation.objects.exists()

    for stage, batch in crashes:
        def crash(at_stage, at_batch, stage=stage, batch=batch):
            if (at_stage, at_batch) == (stage, batch):
                raise Crash(f"killed at {stage} {batch}")
        monkeypatch.setattr(backfill_common, "crash_hook", crash)
        with pytest.raises(Crash):
            backfill.backfill_run(batch_size=BATCH)
    monkeypatch.setattr(backfill_common, "crash_hook", None)
    summary = backfill.backfill_run(batch_size=BATCH)

    assert summary.resumed
    assert money_state() == uninterrupted
    assert summary.total_processed == Invoice.objects.count()
    assert BackfillRun.objects.get().state == "COMPLETED"


def test_fin01_invoice_totals_never_change_between_batches(seeded):
    before = invoice_totals(seeded)
    samples = []

    class Sampler(backfill.BackfillProgress):
        def batch_done(self, **kwargs):
            samples.append(invoice_totals(seeded))

    backfill.backfill_run(batch_size=BATCH, progress=Sampler())

    assert len(samples) >= INVOICES // BATCH
    assert all(sample == before for sample in samples)
    assert invoice_totals(seeded) == before


@contextmanager
def lock_held_by_another_runner():
    """Hold the single-runner lock the way a second process would."""
    if connection.vendor == "postgresql":
        other = other_connection()
        try:
            other.execute("SELECT pg_advisory_lock(%s)", [backfill.ADVISORY_LOCK_KEY])
            yield
            # Released before closing: a closed connection's backend lets go of its locks a moment later.
            other.execute("SELECT pg_advisory_unlock(%s)", [backfill.ADVISORY_LOCK_KEY])
        finally:
            other.close()
    else:
        with open(backfill_locks._sqlite_lock_path(connection), "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield


def test_second_concurrent_run_is_refused_at_once(seeded):
    with lock_held_by_another_runner():
        with pytest.raises(CommandError, match=backfill.BACKFILL_ALREADY_RUNNING):
            backfill_command()
    assert not InvoiceMigration.objects.exists()
    backfill_command()
    assert InvoiceMigration.objects.exists()
