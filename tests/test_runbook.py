"""The PAY-10 runbook end to end (runbook steps 4-6) on a small generated legacy data set.

legacy state (`migrate payments 0001_initial`) -> `pay10_seed_legacy` -> `pay10_baseline` ->
`migrate payments 0002_pay10_schema` -> `pay10_verify --allow-partial --baseline` (nothing migrated
yet, readers see legacy figures; then again with one tenant backfilled) -> `pay10_backfill` ->
`pay10_verify --baseline` passes, and the FIN-01 ALL_TIME totals read through the selector are
identical before and after.

A `transaction=True` test: migrations and the backfill's batches commit. It leaves the test
database migrated to the latest state again, whatever happens.
"""
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.selectors.finance import Period, finance_summary
from payments.management.commands.pay10_verify import SCHEMA_MISSING
from payments.demo.legacy_seed import OTHER_TENANT_SUFFIX

pytestmark = [pytest.mark.pay10_regression, pytest.mark.django_db(transaction=True)]

TENANT = "rcme-dev"
INVOICES = 300


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def without_unapplied_credit(summary: dict) -> dict:
    return {
        **summary,
        "currencies": {
            currency: {name: value for name, value in figures.items() if name != "unappliedCreditCents"}
            for currency, figures in summary["currencies"].items()
        },
    }


def test_runbook_backfill_keeps_finance_figures_and_verifies(legacy_database, tmp_path):
    today = timezone.localdate()
    run("pay10_seed_legacy", "--tenant", TENANT, "--invoices", str(INVOICES), "--seed", "7")
    baseline = tmp_path / "before.json"
    run("pay10_baseline", "--out", str(baseline))
    fin01_before = finance_summary(tenant=None, period=Period.ALL_TIME, today=today)
    with pytest.raises(CommandError, match=f"^{SCHEMA_MISSING}$"):
        run("pay10_verify")
    document = json.loads(baseline.read_text())
    assert document["schema"] == "legacy"
    assert sum(figures["count"] for figures in document["invoicesByStatus"][TENANT].values()) == INVOICES

    run("migrate", "payments", "0002_pay10_schema", "--verbosity", "0")
    # Mid-migration: nothing is migrated yet and readers still see the legacy figures.
    run("pay10_verify", "--baseline", str(baseline), "--allow-partial")
    with pytest.raises(CommandError) as not_yet:
        run("pay10_verify")
    assert "migration_complete" in str(not_yet.value)

    # Mid-way: one tenant backfilled, the other not yet; FIN-01/FIN-02 still equal the baseline.
    run("pay10_backfill", "--tenant", f"{TENANT}{OTHER_TENANT_SUFFIX}")
    run("pay10_verify", "--baseline", str(baseline), "--allow-partial")

    backfill = run("pay10_backfill", "--batch-size", "64")
    assert "Migration complete!" in backfill

    verified = run("pay10_verify", "--baseline", str(baseline))
    assert verified.splitlines()[-1].startswith("PAY-10 verification passed")
    assert "✗" not in verified
    checks = {check["name"]: check for check in json.loads(run("pay10_verify", "--baseline", str(baseline), "--json"))["checks"]}
    assert all(check["ok"] for check in checks.values())
    # the generated anomalies reached verify: foreign-currency payments wait for a person
    assert checks["currency_mismatch_needs_a_person"]["count"] > 0
    assert "after 0 status change(s)" not in checks["baseline_status_counts"]["explanation"]
    # FIN-01 is identical; unapplied credit grows by exactly the backfill's credit (checked by verify above)
    fin01_after = finance_summary(tenant=None, period=Period.ALL_TIME, today=today)
    assert without_unapplied_credit(fin01_after) == without_unapplied_credit(fin01_before)
    assert all(figures["unappliedCreditCents"] == 0 for figures in fin01_before["currencies"].values())
    assert "No orphaned allocations found" in run("pay10_cleanup_orphans", "--dry-run")
