"""The figures the backfill's parity gate holds still (`payments.services.backfill_parity`): FIN-01
ALL_TIME per tenant and currency, read here on billing's side where FIN-01 lives; `pay10_backfill`
hands this function to the gate."""
from datetime import date

from billing.models import Tenant
from billing.selectors.baseline import backfilled_credit_remaining
from billing.selectors.finance import Period, finance_summary
from payments.selectors.verification import FIN01_EXACT_FIELDS


def _leaves(value, path: tuple[str, ...] = ()) -> dict[str, int]:
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            found |= _leaves(item, path + (key,))
        return found
    return {".".join(path): value or 0}


def fin01_parity_figures(*, tenant_ids: list[str], today: date) -> dict[tuple[str, str, str], int]:
    """{(tenant, currency, figure): cents or count}: FIN-01 ALL_TIME for `today`'s verdicts, the
    figures the backfill must not move (`pay10_verify`'s baseline fields), and unapplied credit net
    of what the backfill's own credits hold (the backfill turns overpayments into credit)."""
    figures: dict[tuple[str, str, str], int] = {}
    for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("pk"):
        summary = finance_summary(tenant=tenant, period=Period.ALL_TIME, today=today)["currencies"]
        backfilled = backfilled_credit_remaining(tenant=tenant)
        for currency, numbers in summary.items():
            for name in FIN01_EXACT_FIELDS:
                for path, number in _leaves(numbers.get(name), (name,)).items():
                    figures[(tenant.pk, currency, path)] = number
            unapplied = numbers.get("unappliedCreditCents", 0) - backfilled.get(currency, 0)
            figures[(tenant.pk, currency, "unappliedCreditCents (net of the backfill's credits)")] = unapplied
    return figures
