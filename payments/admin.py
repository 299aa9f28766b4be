"""Admin for payments, credits and the audit trail.

Everything is read-only: money changes only through `payments.services`, which audit each change.
The payment list's verify/reject actions call those services, one payment at a time, and report a
refusal as an admin message; they need the named permissions the API checks too
(`payments.verify_payment`, `payments.reject_payment`). Money columns come from the annotated selectors, one query per list.
Backfill runs are the operator's console: progress and why a run waits, with pause/resume/cancel
actions that do what `pay10_backfill_control` does.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.admin import AllocationInlineBase, AuditInlineBase, ReadOnlyAdminMixin, cents_column
from payments.models import BackfillRun, Credit, Payment, PaymentAuditLog
from payments.selectors.balances import credits_with_balances, payments_with_balances
from payments.services.lookups import ALL_TENANTS
from payments.services.backfill_control import (
    CANCEL,
    PAUSE,
    RESUME,
    backfill_runs_control,
    done_of_total,
    eta_display,
    heartbeat_display,
    run_activity,
    run_progress,
)
from payments.services.errors import PaymentOperationError
from payments.services.payments import payment_reject, payment_verify

MESSAGE_VERIFIED = "{count} payment(s) verified."
MESSAGE_REJECTED = "{count} payment(s) rejected."
MESSAGE_REASON_REQUIRED = "Rejecting needs a reason: type it in the Reason box beside the action."
MESSAGE_RUNS_CONTROLLED = {
    PAUSE: "Paused run(s) {runs}: each stops after its current batch and waits.",
    RESUME: "Resumed run(s) {runs}.",
    CANCEL: "Cancelled run(s) {runs}: each ends after its current batch; pay10_backfill resumes it later.",
}
MESSAGE_RUNS_LEFT = "Left as they are: {runs}."


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
        "idempotency_key", "allocated", "credited", "refunded", "refunded_total", "unallocated", "invoice", "method", "status",
        "created_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "tenant", "amount", "currency", "channel", "verification_status", "reference",
                           "received_at", "idempotency_key")}),
        ("Where the money is", {"fields": ("allocated", "credited", "refunded", "unallocated", "refunded_total")}),
        ("Legacy columns (kept for old readers)", {"fields": ("invoice", "method", "status", "created_at")}),
    )
    inlines = (PaymentAllocationInline, PaymentAuditInline)

    amount = cents_column("amount_cents", "Amount")
    allocated = cents_column("allocated_cents", "Allocated")
    credited = cents_column("credited_cents", "Credited")
    refunded = cents_column("refunded_cents", "Refunded from unallocated money")
    unallocated = cents_column("unallocated_cents", "Unallocated")
    refunded_total = cents_column("refunded_total_cents", "Refunded in all (credits too)")

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
        done = self._each_payment(request, queryset, lambda payment_id: payment_verify(tenant=ALL_TENANTS, payment_id=payment_id, actor=request.user))
        if done:
            self.message_user(request, MESSAGE_VERIFIED.format(count=done), messages.SUCCESS)

    @admin.action(description="Reject selected payments (releases their allocations)", permissions=["reject"])
    def reject_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, MESSAGE_REASON_REQUIRED, messages.ERROR)
            return
        done = self._each_payment(
            request, queryset, lambda payment_id: payment_reject(tenant=ALL_TENANTS, payment_id=payment_id, actor=request.user, reason=reason)
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


@admin.register(BackfillRun)
class BackfillRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The operator's console: every run (one per shard), what it is doing, how far, how fast."""

    list_display = ("id", "shard", "tenant", "state", "activity", "invoices_done", "payments_done", "batch_size_now",
                    "last_batch", "rate", "eta", "heartbeat", "latest_error")
    list_filter = ("state",)
    ordering = ("-id",)
    actions = ("pause_runs", "resume_runs", "cancel_runs")
    readonly_fields = ("id", "shard", "tenant", "state", "activity", "invoices_done", "payments_done", "batch_size_now",
                       "last_batch", "rate", "eta", "heartbeat", "latest_error", "parity_checks", "cursor_invoice_id",
                       "upper_invoice_id", "cursor_payment_id", "upper_payment_id", "batch_size", "counts",
                       "started_at", "finished_at")
    fields = readonly_fields

    @admin.display(description="Shard")
    def shard(self, run: BackfillRun) -> str:
        return (run.counts or {}).get("shard") or "-"

    @admin.display(description="Now")
    def activity(self, run: BackfillRun) -> str:
        return run_activity(run)

    @admin.display(description="Invoices done")
    def invoices_done(self, run: BackfillRun) -> str:
        return done_of_total(*run_progress(run)["invoices"])

    @admin.display(description="Detached payments done")
    def payments_done(self, run: BackfillRun) -> str:
        return done_of_total(*run_progress(run)["payments"])

    @admin.display(description="Batch size")
    def batch_size_now(self, run: BackfillRun) -> int:
        return run_progress(run)["batchSize"]

    @admin.display(description="Last batch")
    def last_batch(self, run: BackfillRun) -> str:
        seconds = run_progress(run)["lastBatchSeconds"]
        return "-" if seconds is None else f"{seconds:.2f} s"

    @admin.display(description="Rate")
    def rate(self, run: BackfillRun) -> str:
        rate = run_progress(run)["rowsPerSecond"]
        return "-" if rate is None else f"{rate:,.0f} rows/s"

    @admin.display(description="ETA")
    def eta(self, run: BackfillRun) -> str:
        return eta_display(run_progress(run)["etaSeconds"])

    @admin.display(description="Heartbeat")
    def heartbeat(self, run: BackfillRun) -> str:
        return heartbeat_display(run)

    @admin.display(description="Latest error")
    def latest_error(self, run: BackfillRun) -> str:
        return run_progress(run)["lastError"] or "-"

    @admin.display(description="Parity checks passed")
    def parity_checks(self, run: BackfillRun) -> int:
        return run_progress(run)["parityChecks"]

    def has_control_permission(self, request: HttpRequest) -> bool:
        """Steering a backfill needs the right to change runs."""
        return request.user.has_perm("payments.change_backfillrun")

    @admin.action(description="Pause selected runs (between batches)", permissions=["control"])
    def pause_runs(self, request: HttpRequest, queryset: QuerySet[BackfillRun]) -> None:
        self._control(request, queryset, PAUSE)

    @admin.action(description="Resume selected runs", permissions=["control"])
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[BackfillRun]) -> None:
        self._control(request, queryset, RESUME)

    @admin.action(description="Cancel selected runs (they end cleanly; a later run resumes)", permissions=["control"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[BackfillRun]) -> None:
        self._control(request, queryset, CANCEL)

    def _control(self, request: HttpRequest, queryset: QuerySet[BackfillRun], action: str) -> None:
        try:
            outcome = backfill_runs_control(
                action=action, run_ids=list(queryset.values_list("pk", flat=True)), actor=request.user.get_username()
            )
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        if outcome.changed:
            runs = ", ".join(map(str, outcome.changed))
            self.message_user(request, MESSAGE_RUNS_CONTROLLED[action].format(runs=runs), messages.SUCCESS)
        if outcome.unchanged:
            left = ", ".join(f"run {pk} is {state}" for pk, state in outcome.unchanged)
            self.message_user(request, MESSAGE_RUNS_LEFT.format(runs=left), messages.WARNING)
