"""The one writer of `billing_invoice.status`, the cache of the status engine's verdict."""
from collections import defaultdict
from datetime import date
from collections.abc import Iterable

from django.db.models import F
from django.utils import timezone

from billing.models import Invoice, Tenant
from payments.selectors.balances import invoices_with_balances, invoices_with_balances_grouped


def invoice_statuses_refresh(
    *,
    tenant: Tenant | None = None,
    invoice_ids: Iterable[int] | None = None,
    today: date | None = None,
    include_unmigrated: bool = False,
) -> dict[int, tuple[str, str]]:
    """Store today's verdict for every migrated invoice whose stored status differs.

    Safe to run at any time and daily (`manage.py pay10_refresh_statuses`): it changes only what is
    stale. Invoices the backfill has not reached keep their legacy status (the backfill records it)
    unless `include_unmigrated`, which the backfill itself uses. Returns {invoice id: (old, new)}.
    """
    today = today or timezone.localdate()
    if invoice_ids is not None:
        # A service's handful of invoices: per-row sums, cheapest for a few ids.
        queryset = invoices_with_balances(tenant=tenant, today=today).filter(pk__in=list(invoice_ids))
    else:
        # A whole tenant or database (the daily refresh): one grouped pass.
        queryset = invoices_with_balances_grouped(tenant=tenant, today=today)
    if not include_unmigrated:
        queryset = queryset.filter(is_migrated=True)
    stale = queryset.exclude(status=F("status_today")).values_list("pk", "status", "status_today")
    changes = {pk: (old, new) for pk, old, new in stale}
    by_new_status: dict[str, list[int]] = defaultdict(list)
    for pk, (_old, new) in changes.items():
        by_new_status[new].append(pk)
    now = timezone.now()
    for new_status, pks in by_new_status.items():
        Invoice.objects.filter(pk__in=pks).update(status=new_status, updated_at=now)
    return changes
