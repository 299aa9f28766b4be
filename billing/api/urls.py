"""The finance API, mounted at /api/billing/ (runbook URLs have no trailing slash; one is accepted)."""
from django.urls import path

from billing.api.views import FinanceSummarySlashView, FinanceSummaryView, InvoicePageSlashView, InvoicePageView

urlpatterns = [
    path("admin/finance/summary", FinanceSummaryView.as_view(), name="finance-summary"),
    path("admin/finance/summary/", FinanceSummarySlashView.as_view()),
    path("invoices/tenant", InvoicePageView.as_view(), name="tenant-invoices"),
    path("invoices/tenant/", InvoicePageSlashView.as_view()),
]
