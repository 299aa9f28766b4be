"""Admin for payments, credits and the audit trail.

Everything is read-only: money changes only through `payments.services`, which audit each change.
The payment list's verify/reject actions call those services, one payment at a time, and report a
refusal as an admin message; they need the named permissions the API checks too
(`payments.verify_payment`, `payments.reject_payment`). Money columns come from the annotated selectors, one query per list.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.admin import AllocationInlineBase, AuditInlineBase, ReadOnlyAdminMixin, cents_column
from payments.models import Credit, Payment, PaymentAuditLog
from payments.selectors.balances import credits_with_balances, payments_with_balances
from payments.services.errors import PaymentOperationError
from payments.services.payments import payment_reject, payment_verify

MESSAGE_VERIFIED = "{count} payment(s) verified."
MESSAGE_REJECTED = "{count} payment(s) rejected."
MESSAGE_REASON_REQUIRED = "Rejecting needs a reason: type it in the Reason box beside the action."


class PaymentActionForm(helpers.ActionForm):
    reason = forms.CharField(required=False, max_length=255, label="Reason (for reject)")


class PaymentAllocationInline(AllocationInlineBase):
    fk_name = "payment"
    verbose_name_plural = "Allocations (where this payment's money went)"


class CreditApplicationInline(AllocationInlineBase):
    fk_name = "credit"
    verbose_name_plural = "Applications of this credit"


class PaymentAuditInline(AuditInlineBase):
    fk_name = "payment"


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id", "tenant", "amount", "currency", "channel", "verification_status", "allocated", "unallocated",
        "received_at", "reference",
    )
    list_select_related = ("tenant",)
    list_filter = ("verification_status", "channel", "tenant")
    search_fields = ("reference",)
    show_full_result_count = False
    action_form = PaymentActionForm
    actions = ("verify_payments", "reject_payments")
    readonly_fields = (
        "id", "tenant", "amount", "currency", "channel", "verification_status", "reference", "received_at",
        "idempotency_key", "allocated", "credited", "refunded", "unallocated", "invoice", "method", "status",
        "created_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "tenant", "amount", "currency", "channel", "verification_status", "reference",
                           "received_at", "idempotency_key")}),
        ("Where the money is", {"fields": ("allocated", "credited", "refunded", "unallocated")}),
        ("Legacy columns (kept for old readers)", {"fields": ("invoice", "method", "status", "created_at")}),
    )
    inlines = (PaymentAllocationInline, PaymentAuditInline)

    amount = cents_column("amount_cents", "Amount")
    allocated = cents_column("allocated_cents", "Allocated")
    credited = cents_column("credited_cents", "Credited")
    refunded = cents_column("refunded_cents", "Refunded")
    unallocated = cents_column("unallocated_cents", "Unallocated")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Payment]:
        return payments_with_balances().order_by("-id")

    def has_verify_permission(self, request: HttpRequest) -> bool:
        """The API's verify endpoint checks the same named permission."""
        return request.user.has_perm("payments.verify_payment")

    def has_reject_permission(self, request: HttpRequest) -> bool:
        """The API's reject endpoint checks the same named permission."""
        return request.user.has_perm("payments.reject_payment")

    @admin.action(description="Verify selected payments", permissions=["verify"])
    def verify_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        done = self._each_payment(request, queryset, lambda payment_id: payment_verify(payment_id=payment_id, actor=request.user))
        if done:
            self.message_user(request, MESSAGE_VERIFIED.format(count=done), messages.SUCCESS)

    @admin.action(description="Reject selected payments (releases their allocations)", permissions=["reject"])
    def reject_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, MESSAGE_REASON_REQUIRED, messages.ERROR)
            return
        done = self._each_payment(
            request, queryset, lambda payment_id: payment_reject(payment_id=payment_id, actor=request.user, reason=reason)
        )
        if done:
            self.message_user(request, MESSAGE_REJECTED.format(count=done), messages.SUCCESS)

    def _each_payment(self, request: HttpRequest, queryset: QuerySet[Payment], operation) -> int:
        """Run the operation per payment (each in its own transaction); a refusal becomes a message."""
        done = 0
        for payment_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                operation(payment_id)
            except PaymentOperationError as error:
                self.message_user(request, f"Payment {payment_id}: {error.message}", messages.ERROR)
            else:
                done += 1
        return done


@admin.register(Credit)
class CreditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "tenant", "amount", "applied", "refunded", "remaining", "currency", "source_payment", "reason",
                    "backfilled", "created_at")
    list_select_related = ("tenant", "source_payment")
    list_filter = ("backfilled", "tenant")
    search_fields = ("reason",)
    show_full_result_count = False
    readonly_fields = ("id", "tenant", "currency", "amount", "applied", "refunded", "remaining", "source_payment",
                       "reason", "backfilled", "created_by", "created_at")
    fields = readonly_fields
    inlines = (CreditApplicationInline,)

    amount = cents_column("amount_cents", "Amount")
    applied = cents_column("applied_cents", "Applied")
    refunded = cents_column("refunded_cents", "Refunded")
    remaining = cents_column("remaining_cents", "Remaining")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Credit]:
        return credits_with_balances().order_by("-id")


@admin.register(PaymentAuditLog)
class PaymentAuditLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only trail: nobody adds, changes or deletes a row here."""

    list_display = ("event_time", "event_type", "tenant_id", "actor_label", "invoice_id", "payment_id", "amount",
                    "backfilled")
    list_filter = ("event_type", "backfilled", "tenant")
    search_fields = ("actor_label",)
    show_full_result_count = False
    readonly_fields = ("event_time", "event_type", "tenant", "actor_label", "amount", "invoice", "payment", "allocation",
                       "credit", "before", "after", "extra", "backfilled")
    fields = readonly_fields
    ordering = ("-event_time", "-id")

    amount = cents_column("amount_cents", "Amount")
