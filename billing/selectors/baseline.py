"""What a PAY-10 baseline document contains (runbook Step 4, `manage.py pay10_baseline`).

The document records what finance staff see before the migration, so that `pay10_verify
--baseline` can prove it unchanged afterwards:
- `fin01`: FIN-01 ALL_TIME (`finance_summary`) for the tenant, or for all tenants;
- `fin02`: FIN-02 page 1 of 50 (`invoice_page`) keyed by tenant id (one key with a tenant);
- `invoicesByStatus`: invoice count and sum of `amount_cents` by STORED status, per tenant (the
  runbook's psql query);
- `asOf`: the day every engine verdict was computed for; verify recomputes the current figures for
  that same day so that days passing between baseline and verify do not show as differences;
- `backfilledCreditRemaining` and `backfillStatusChanges`: what the backfill had already done
  when the baseline was taken (nothing at the legacy state), so a baseline taken mid-way compares
  only what happened after it.

It reads only legacy columns when the PAY-10 schema is not installed (after `migrate payments
0001_initial`).
"""
from datetime import date

from django.db.models import Count, Exists, F, OuterRef, Sum
from django.utils import timezone

from billing.models import Invoice, Tenant
from billing.selectors.finance import Period, finance_summary, invoice_page
from payments.models import BackfillDeviation, InvoiceMigration
from payments.selectors.balances import credits_with_balances
from payments.selectors.schema import pay10_schema_installed

BASELINE_KIND = "pay10-baseline"
BASELINE_VERSION = 1
BASELINE_PAGE_SIZE = 50
UNKNOWN_TENANT = "unknown tenant {tenant_id!r}"


class UnknownTenant(LookupError):
    pass


def tenant_by_id(*, tenant_id: str | None) -> Tenant | None:
    """The tenant a command's `--tenant` names, None without one; `UnknownTenant` if it does not exist."""
    if tenant_id is None:
        return None
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise UnknownTenant(UNKNOWN_TENANT.format(tenant_id=tenant_id))
    return tenant


def invoice_counts_by_stored_status(*, tenant: Tenant | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """{tenant id: {stored status: {"count", "amountCents"}}}."""
    invoices = Invoice.objects.all() if tenant is None else Invoice.objects.filter(tenant=tenant)
    rows = invoices.values("tenant_id", "status").annotate(n=Count("id"), amount=Sum("amount_cents")).order_by()
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        counts.setdefault(row["tenant_id"], {})[row["status"]] = {"count": row["n"], "amountCents": row["amount"] or 0}
    return {tenant_id: dict(sorted(by_status.items())) for tenant_id, by_status in sorted(counts.items())}


def backfilled_credit_remaining(*, tenant: Tenant | None = None) -> dict[str, int]:
    """Unapplied money of the credits the backfill created, per currency."""
    if not pay10_schema_installed():
        return {}
    rows = (
        credits_with_balances(tenant=tenant).filter(backfilled=True)
        .values("currency").annotate(total=Sum("remaining_cents")).order_by("currency")
    )
    return {row["currency"]: row["total"] or 0 for row in rows}


def backfill_status_changes(*, tenant: Tenant | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """{tenant id: {"FROM->TO": {"count", "amountCents"}}}: migrated invoices whose stored status
    is no longer their legacy one and for which the backfill recorded a STATUS_CHANGED deviation."""
    if not pay10_schema_installed():
        return {}
    migrations = InvoiceMigration.objects.all() if tenant is None else InvoiceMigration.objects.filter(invoice__tenant=tenant)
    recorded = BackfillDeviation.objects.filter(invoice_id=OuterRef("invoice_id"), kind=BackfillDeviation.Kind.STATUS_CHANGED)
    rows = (
        migrations.exclude(legacy_status=F("invoice__status"))
        .filter(Exists(recorded))
        .values("invoice__tenant_id", "legacy_status", "invoice__status")
        .annotate(n=Count("pk"), amount=Sum("invoice__amount_cents"))
        .order_by()
    )
    changes: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        key = f"{row['legacy_status']}->{row['invoice__status']}"
        changes.setdefault(row["invoice__tenant_id"], {})[key] = {"count": row["n"], "amountCents": row["amount"] or 0}
    return changes


def baseline_document(*, tenant: Tenant | None = None, today: date | None = None) -> dict:
    today = today or timezone.localdate()
    tenants = [tenant] if tenant is not None else list(Tenant.objects.order_by("id"))
    return {
        "kind": BASELINE_KIND,
        "version": BASELINE_VERSION,
        "capturedAt": timezone.now().isoformat(),
        "asOf": today.isoformat(),
        "schema": "pay10" if pay10_schema_installed() else "legacy",
        "tenant": tenant.pk if tenant is not None else None,
        "fin01": finance_summary(tenant=tenant, period=Period.ALL_TIME, today=today),
        "fin02": {
            each.pk: invoice_page(tenant=each, page=1, page_size=BASELINE_PAGE_SIZE, today=today) for each in tenants
        },
        "invoicesByStatus": invoice_counts_by_stored_status(tenant=tenant),
        "backfilledCreditRemaining": backfilled_credit_remaining(tenant=tenant),
        "backfillStatusChanges": backfill_status_changes(tenant=tenant),
    }
