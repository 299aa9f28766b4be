"""The payment operations API, mounted at /api/ (paths exactly as issue 4 names them, no trailing slash)."""
from django.urls import path

from payments.api import views

urlpatterns = [
    path("payments", views.PaymentCreateView.as_view(), name="payment-record"),
    path("payments/<int:payment_id>", views.PaymentDetailView.as_view(), name="payment-detail"),
    path("payments/<int:payment_id>/verify", views.PaymentVerifyView.as_view(), name="payment-verify"),
    path("payments/<int:payment_id>/reject", views.PaymentRejectView.as_view(), name="payment-reject"),
    path("payments/<int:payment_id>/allocations", views.PaymentAllocateView.as_view(), name="payment-allocate"),
    path("payments/<int:payment_id>/auto-allocate", views.PaymentAutoAllocateView.as_view(), name="payment-auto-allocate"),
    path("payments/<int:payment_id>/refund", views.PaymentRefundView.as_view(), name="payment-refund"),
    path("allocations/<int:allocation_id>/reverse", views.AllocationReverseView.as_view(), name="allocation-reverse"),
    path("credits/<int:credit_id>/apply", views.CreditApplyView.as_view(), name="credit-apply"),
    path("invoices/<int:invoice_id>/void", views.InvoiceVoidView.as_view(), name="invoice-void"),
]
