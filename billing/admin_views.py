"""The finance dashboard of the Django admin: FIN-01 per currency for a chosen period and tenant.

It reads the same selector as the API (`finance_summary`) and validates its parameters with the
API's own query serializer, so the page and `GET /api/billing/admin/finance/summary` agree.
"""
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from billing.api.serializers import FinanceSummaryQuerySerializer
from billing.models import Tenant
from billing.selectors.admin_charts import BUCKET_LABELS, aging_bar_chart_svg, cents_display
from billing.selectors.finance import AGING_BUCKETS, Period, finance_summary

ERROR_UNKNOWN_TENANT = "tenant {tenant!r} does not exist"

FIGURES = (
    ("invoicedCents", "Invoiced", "issued invoices (DRAFT and VOID excluded), by issue date"),
    ("collectedCents", "Collected", "verified money and credit applied to them"),
    ("outstandingCents", "Outstanding", "invoiced - collected"),
    ("overdueCents", "Overdue", "outstanding of invoices overdue today"),
    ("pendingVerificationCents", "Pending verification", "payments awaiting verification, by received date"),
    ("unappliedCreditCents", "Unapplied credit", "what credits hold now, whatever the period"),
)


def _currency_sections(summary: dict) -> list[dict]:
    sections = []
    for currency, figures in summary["currencies"].items():
        sections.append(
            {
                "currency": currency,
                "figures": [
                    {"key": key, "label": label, "help": help_text, "cents": figures[key], "display": cents_display(figures[key])}
                    for key, label, help_text in FIGURES
                ],
                "by_status": [
                    {"status": status, "count": row["count"], "cents": row["amountCents"], "display": cents_display(row["amountCents"])}
                    for status, row in figures["byStatus"].items()
                ],
                "aging": [
                    {"bucket": bucket, "label": BUCKET_LABELS[bucket], "cents": figures["aging"][bucket],
                     "display": cents_display(figures["aging"][bucket])}
                    for bucket in AGING_BUCKETS
                ],
                "aging_chart": aging_bar_chart_svg(aging=figures["aging"], currency=currency),
            }
        )
    return sections


def finance_dashboard(request: HttpRequest, *, admin_site: AdminSite) -> TemplateResponse:
    # The same named permission as FIN-01 over the API.
    if not request.user.has_perm("payments.view_finance_summary"):
        raise PermissionDenied
    # An empty form field means "not chosen", as if the parameter were left out.
    data = {key: value for key, value in request.GET.items() if value != ""}
    query = FinanceSummaryQuerySerializer(data=data)
    summary, errors = None, {}
    if query.is_valid():
        params = query.validated_data
        tenant = None
        if "tenant" in params:
            tenant = Tenant.objects.filter(pk=params["tenant"]).first()
            if tenant is None:
                errors = {"tenant": [ERROR_UNKNOWN_TENANT.format(tenant=params["tenant"])]}
        if not errors:
            summary = finance_summary(
                tenant=tenant, period=params["period"], date_from=params.get("date_from"), date_to=params.get("date_to")
            )
    else:
        errors = query.errors
    context = {
        **admin_site.each_context(request),
        "title": "Finance dashboard",
        "periods": [*Period.NAMED, Period.CUSTOM],
        "tenants": list(Tenant.objects.values_list("id", "name")),
        "chosen": data,
        "errors": [f"{field}: {message}" for field, messages in errors.items() for message in messages],
        "summary": summary,
        "sections": _currency_sections(summary) if summary is not None else [],
    }
    return TemplateResponse(request, "admin/billing/finance_dashboard.html", context)
