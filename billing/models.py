"""Tenants and invoices.

The columns of `billing_tenant` and `billing_invoice` are the legacy contract (SPEC.md, legacy
state): operators' old data is loaded into them and PAY-10 adds no column to them. PAY-10 state
about an invoice (whether it is migrated, its legacy figures) lives in `payments`' own tables.

Invariants kept by the database:
- an invoice number is unique within its tenant;
- amounts are integer cents, never negative;
- a status is one of `InvoiceStatus`.
`status` is a cache of the status engine (`payments.domain.status`), written only by
`payments.services.invoice_status`.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class InvoiceStatus(models.TextChoices):
    DRAFT = "DRAFT"
    ISSUED = "ISSUED"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOID = "VOID"


class Tenant(models.Model):
    id = models.CharField(primary_key=True, max_length=64, help_text="The tenant slug, e.g. rcme-dev.")
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code; every invoice and payment uses it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Invoice(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=64)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    amount_paid_cents = models.BigIntegerField(
        default=0, help_text="Legacy running total, frozen since PAY-10; allocations are the truth."
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="%(app_label)s_%(class)s_number_unique_per_tenant"),
            models.CheckConstraint(condition=Q(amount_cents__gte=0), name="%(app_label)s_%(class)s_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(amount_paid_cents__gte=0), name="%(app_label)s_%(class)s_amount_paid_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(status__in=InvoiceStatus.values), name="%(app_label)s_%(class)s_status_valid"
            ),
        ]
        # PAY-10 (billing 0003, reversed with payments 0002): FIN-02 pages a tenant's ids on it.
        indexes = [models.Index(fields=["tenant", "id"], name="billing_invoice_tenant_page")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.number}"




class TenantMember(models.Model):
    """A user who acts for one tenant through the API; staff users act for any tenant."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_member")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id}"
