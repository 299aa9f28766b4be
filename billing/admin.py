"""Admin for tenants and invoices, and the finance dashboard.

Invoices are read-only here: their money changes only through `payments.services` (audited), and
their status is the engine's verdict. The list's paid/pending/balance/status columns come from
one annotated query (`invoices_with_balances`), so its cost does not grow with the page.
"""
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html
from knox.models import AuthToken

from billing.admin_views import finance_dashboard
from billing.models import Invoice, InvoiceStatus, Tenant
from billing.selectors.admin_charts import cents_display
from payments.domain import status as engine
from payments.models import Allocation, InvoiceMigration, PaymentAuditLog
from payments.selectors.balances import invoices_with_balances
from payments.selectors.schema import pay10_schema_installed

MESSAGE_REVOKED = "{count} token(s) revoked."


class ReadOnlyAdminMixin:
    """View only: money and statuses change through the services, never by editing rows here."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def cents_column(field: str, description: str):
    """An admin column showing the (annotated) integer `field` as an amount, sortable by it."""

    @admin.display(description=description, ordering=field)
    def column(self, obj) -> str:
        cents = getattr(obj, field)
        return "-" if cents is None else cents_display(cents)

    return column


class HistoryInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Rows shown under their parent, read-only: every column but the link back to the parent."""

    columns: tuple[str, ...] = ()
    extra = 0
    can_delete = False

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [name for name in self.columns if name != self.fk_name]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return self.get_fields(request, obj)


class AllocationInlineBase(HistoryInline):
    """Allocations of an invoice, a payment or a credit, reversed ones included (they are history)."""

    model = Allocation
    raw_id_fields = ("invoice", "payment", "credit")
    columns = ("invoice", "payment", "credit", "amount", "reversal_state", "backfilled", "created_at")
    ordering = ("id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Allocation]:
        return super().get_queryset(request).select_related("invoice", "payment", "credit", "reversal")

    amount = cents_column("amount_cents", "Amount")

    @admin.display(description="Reversal")
    def reversal_state(self, allocation: Allocation) -> str:
        reversal = getattr(allocation, "reversal", None)
        if reversal is None:
            return "active"
        return f"reversed {reversal.created_at:%Y-%m-%d %H:%M}: {reversal.reason}"


class InvoiceAllocationInline(AllocationInlineBase):
    fk_name = "invoice"
    verbose_name_plural = "Allocations (money applied to this invoice)"


class AuditInlineBase(HistoryInline):
    """The audit trail of one invoice or payment, newest first."""

    model = PaymentAuditLog
    raw_id_fields = ("invoice", "payment", "allocation", "credit")
    columns = (
        "event_time", "event_type", "actor_label", "amount", "invoice", "payment", "allocation", "credit",
        "before", "after", "extra", "backfilled",
    )
    ordering = ("-event_time", "-id")
    verbose_name_plural = "Audit history"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PaymentAuditLog]:
        return super().get_queryset(request).select_related("invoice", "payment", "allocation", "credit")

    amount = cents_column("amount_cents", "Amount")


class InvoiceAuditInline(AuditInlineBase):
    fk_name = "invoice"


class StatusTodayFilter(admin.SimpleListFilter):
    """Filters on the engine's verdict for today, never on a stored status that may be stale."""

    title = "status (today)"
    parameter_name = "status_today"

    def lookups(self, request, model_admin):
        return InvoiceStatus.choices

    def queryset(self, request, queryset):
        if self.value() in InvoiceStatus.values:
            return queryset.filter(status_today=self.value())
        return queryset


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue"), ("no", "Not overdue"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status_today=engine.OVERDUE)
        if self.value() == "no":
            return queryset.exclude(status_today=engine.OVERDUE)
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "number", "tenant", "amount", "paid", "pending", "balance", "status_today", "currency", "due_date",
        "issued_at", "is_migrated",
    )
    list_select_related = ("tenant",)
    list_filter = (StatusTodayFilter, OverdueFilter, "tenant")
    search_fields = ("number",)
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = (
        "number", "tenant", "currency", "amount", "status_today", "paid", "pending", "balance", "outstanding",
        "issued_at", "due_date", "paid_at", "created_at", "updated_at", "migration",
    )
    fieldsets = (
        (None, {"fields": ("number", "tenant", "currency", "amount", "status_today")}),
        ("Money (from allocations; legacy figure until migrated)", {"fields": ("paid", "pending", "balance", "outstanding")}),
        ("Dates", {"fields": ("issued_at", "due_date", "paid_at", "created_at", "updated_at")}),
        ("PAY-10", {"fields": ("migration",)}),
    )
    inlines = (InvoiceAllocationInline, InvoiceAuditInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invoice]:
        return invoices_with_balances()

    def get_inlines(self, request: HttpRequest, obj=None):
        # At the legacy state (`migrate payments 0001_initial`) there are no allocations or audit rows yet.
        return self.inlines if pay10_schema_installed() else ()

    def get_urls(self):
        dashboard = self.admin_site.admin_view(self._finance_dashboard_view)
        return [path("finance-dashboard/", dashboard, name="billing_finance_dashboard"), *super().get_urls()]

    def _finance_dashboard_view(self, request: HttpRequest):
        return finance_dashboard(request, admin_site=self.admin_site)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {**(extra_context or {}), "finance_dashboard_url": reverse("admin:billing_finance_dashboard")}
        return super().changelist_view(request, extra_context=extra_context)

    amount = cents_column("amount_cents", "Amount")
    paid = cents_column("paid_cents", "Paid")
    pending = cents_column("pending_cents", "Pending")
    balance = cents_column("balance_cents", "Balance")
    outstanding = cents_column("outstanding_cents", "Outstanding")

    @admin.display(description="Status (today)", ordering="status_today")
    def status_today(self, invoice: Invoice) -> str:
        return invoice.status_today

    @admin.display(description="Migrated", boolean=True, ordering="is_migrated")
    def is_migrated(self, invoice: Invoice) -> bool:
        return invoice.is_migrated

    @admin.display(description="Migration")
    def migration(self, invoice: Invoice) -> str:
        if not pay10_schema_installed():
            return "PAY-10 schema not installed (legacy state)."
        marker = InvoiceMigration.objects.filter(invoice=invoice).first()
        if marker is None:
            return "Not migrated yet: paid is the legacy figure."
        return format_html(
            "Migrated {}; legacy status {}, legacy amount_paid {}, legacy paid figure {}",
            f"{marker.migrated_at:%Y-%m-%d %H:%M}",
            marker.legacy_status,
            cents_display(marker.legacy_amount_paid_cents),
            cents_display(marker.legacy_paid_cents),
        )


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "currency", "created_at")
    search_fields = ("id", "name")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        # The slug is the key; the currency is every invoice's and payment's currency.
        return ("id", "currency", "created_at") if obj is not None else ("created_at",)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# API tokens: minted only by `manage.py create_api_token` (tenant binding, expiry, per-user limit);
# the admin lists them and revokes them, nothing else. knox's own admin, which mints tokens for any
# user with no expiry, is replaced.
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class AuthTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("token_key", "user", "created", "expiry")
    list_select_related = ("user",)
    search_fields = ("token_key", "user__username")
    fields = ("token_key", "user", "created", "expiry")
    readonly_fields = fields
    actions = ("revoke_tokens",)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("knox.delete_authtoken")

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        count, _by_model = queryset.delete()
        self.message_user(request, MESSAGE_REVOKED.format(count=count), messages.SUCCESS)
