"""Payments, allocations, credits and the audit trail (PAY-10).

A payment is money received. Allocations apply it to invoices; money of a payment that is not
allocated may be issued as a credit of its tenant, and credits are applied to invoices by
allocations too. Every change of money writes a `PaymentAuditLog` row in the same transaction.

Invariants (SPEC.md "Money invariants"; `pay10_verify` re-checks every one):
1. per payment: active allocations + credits issued from it + refunds of its unallocated money
   never exceed its amount;
2. per credit: active applications + refunds of it never exceed its amount;
3. per invoice: money applied by active allocations never exceeds its amount;
4. an allocation's invoice and payment/credit exist, in the same tenant and currency;
5. a stored invoice status equals the status engine's verdict;
6. every change of money is audited in the same transaction;
7. the backfill conserves money.
The database enforces what a row can say by itself (CHECK, UNIQUE, PROTECT); the multi-row rules
are kept under row locks by `payments.services` and, on PostgreSQL, by constraint triggers.

Allocations are history: a reversal is an `AllocationReversal` row, never an edit or a delete.
An allocation is *active* while it has no reversal.

Legacy columns of `payments_payment` (`invoice`, `method`, `status`) are the pre-PAY-10 contract;
`channel`, `verification_status` and `idempotency_key` are PAY-10's and stay NULL on a legacy row
until the backfill maps it.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from payments.domain import channels
from payments.domain.backfill import DEVIATION_KINDS


def _created_by():
    """Who made the row: a user, or nobody for the system and the backfill."""
    return models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")


def _amount_positive() -> models.CheckConstraint:
    return models.CheckConstraint(condition=Q(amount_cents__gt=0), name="%(app_label)s_%(class)s_amount_positive")


class LegacyPaymentStatus(models.TextChoices):
    SUCCEEDED = "SUCCEEDED"
    PENDING = "PENDING"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


# The channels are the domain's (`payments.domain.channels.CHANNELS`): defined there, derived here.
Channel = models.TextChoices("Channel", channels.CHANNELS)


class VerificationStatus(models.TextChoices):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"


class Payment(models.Model):
    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey(
        "billing.Invoice",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="legacy_payments",
        help_text="Legacy link to one invoice; since PAY-10 allocations say where money goes.",
    )
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    method = models.CharField(max_length=64, blank=True, default="")
    reference = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=LegacyPaymentStatus.choices, default=LegacyPaymentStatus.PENDING)
    received_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    # PAY-10
    channel = models.CharField(max_length=16, choices=Channel.choices, null=True, blank=True)
    verification_status = models.CharField(max_length=16, choices=VerificationStatus.choices, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(
        max_length=64, null=True, blank=True, help_text="Hash of the request that created it under its idempotency key."
    )

    class Meta:
        constraints = [
            _amount_positive(),
            models.CheckConstraint(
                condition=Q(status__in=LegacyPaymentStatus.values), name="%(app_label)s_%(class)s_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__isnull=True) | Q(channel__in=Channel.values),
                name="%(app_label)s_%(class)s_channel_valid",
            ),
            models.CheckConstraint(
                condition=Q(verification_status__isnull=True) | Q(verification_status__in=VerificationStatus.values),
                name="%(app_label)s_%(class)s_verification_status_valid",
            ),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_idempotency_key_unique_per_tenant",
            ),
        ]
        indexes = [
            # FIN-01's pending verification: the few payments awaiting it, not the whole table
            # (a legacy row counts by its legacy status until the backfill maps it).
            models.Index(
                fields=["tenant", "received_at"],
                include=["currency", "amount_cents"],  # summed from the index alone (PostgreSQL)
                condition=Q(verification_status="PENDING") | Q(verification_status__isnull=True, status="PENDING"),
                name="payments_payment_pending",
            ),
            # FIN-01's unapplied credit leaves out credits of rejected payments: an anti-join on these.
            models.Index(fields=["id"], condition=Q(verification_status="REJECTED"), name="payments_payment_rejected"),
        ]
        # Named permissions of the operations a model permission is too coarse for; the API's views
        # (`required_permission`) and the admin's actions check the same names (docs/api.md).
        permissions = [
            ("verify_payment", "Can verify payments"),
            ("reject_payment", "Can reject payments"),
            ("refund_payment", "Can refund payments"),
            ("allocate_payment", "Can allocate payments and apply credits to invoices"),
            ("reverse_allocation", "Can reverse allocations"),
            ("void_invoice", "Can void invoices"),
            ("view_finance_summary", "Can read the finance summary (FIN-01)"),
        ]

    def __str__(self) -> str:
        return f"payment {self.id} ({self.amount_cents} {self.currency})"


class Credit(models.Model):
    """Money a tenant holds with us: a payment's leftover, or applied money moved off a voided invoice."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="credits")
    currency = models.CharField(max_length=3)
    amount_cents = models.BigIntegerField(help_text="The credit's original amount.")
    source_payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="credits_issued"
    )
    reason = models.CharField(max_length=255)
    backfilled = models.BooleanField(default=False)
    created_by = _created_by()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [_amount_positive()]
        indexes = [
            models.Index(fields=["tenant", "currency"], name="payments_credit_tenant_cur"),
            # FIN-01's unapplied credit: a tenant's credits in source-payment order, summed from the
            # index alone, anti-joined to the rejected payments.
            models.Index(
                fields=["tenant", "source_payment"], include=["currency", "amount_cents"], name="payments_credit_source_cover"
            ),
        ]

    def __str__(self) -> str:
        return f"credit {self.id} ({self.amount_cents} {self.currency})"


class Allocation(models.Model):
    """Money of one payment, or of one credit, applied to one invoice."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="allocations")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="allocations")
    credit = models.ForeignKey(Credit, on_delete=models.PROTECT, null=True, blank=True, related_name="applications")
    amount_cents = models.BigIntegerField()
    backfilled = models.BooleanField(default=False)
    created_by = _created_by()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            _amount_positive(),
            models.CheckConstraint(
                condition=Q(payment__isnull=False, credit__isnull=True) | Q(payment__isnull=True, credit__isnull=False),
                name="%(app_label)s_%(class)s_one_source",
            ),
        ]

    def __str__(self) -> str:
        source = f"payment {self.payment_id}" if self.payment_id else f"credit {self.credit_id}"
        return f"allocation {self.id}: {self.amount_cents} from {source} to invoice {self.invoice_id}"


class AllocationReversal(models.Model):
    """The record that an allocation no longer applies; its money went back to its payment or credit."""

    allocation = models.OneToOneField(
        Allocation, on_delete=models.PROTECT, primary_key=True, related_name="reversal"
    )
    reason = models.CharField(max_length=255)
    created_by = _created_by()
    created_at = models.DateTimeField(default=timezone.now)


class Refund(models.Model):
    """Money paid back to the customer, out of a payment's unallocated money or out of one of its credits."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="refunds")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    credit = models.ForeignKey(Credit, on_delete=models.PROTECT, null=True, blank=True, related_name="refunds")
    amount_cents = models.BigIntegerField()
    reason = models.CharField(max_length=255, blank=True, default="")
    created_by = _created_by()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            _amount_positive(),
        ]


class AuditEvent(models.TextChoices):
    PAYMENT_RECORDED = "PAYMENT_RECORDED"
    PAYMENT_VERIFIED = "PAYMENT_VERIFIED"
    PAYMENT_REJECTED = "PAYMENT_REJECTED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    ALLOCATION_CREATED = "ALLOCATION_CREATED"
    ALLOCATION_REVERSED = "ALLOCATION_REVERSED"
    CREDIT_ISSUED = "CREDIT_ISSUED"
    CREDIT_APPLIED = "CREDIT_APPLIED"
    INVOICE_VOIDED = "INVOICE_VOIDED"
    INVOICE_STATUS_CHANGED = "INVOICE_STATUS_CHANGED"
    INVOICE_BACKFILLED = "INVOICE_BACKFILLED"
    PAYMENT_BACKFILLED = "PAYMENT_BACKFILLED"
    ORPHAN_REMOVED = "ORPHAN_REMOVED"


class PaymentAuditLog(models.Model):
    """Append-only trail of every change of money: who, what, amounts before and after, when.

    References are plain ids without database foreign keys so that the trail outlives what it
    describes (an orphan cleanup deletes rows; their audit stays).
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="payment_audit_logs")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True, default="", help_text="Who, kept if the user goes.")
    event_type = models.CharField(max_length=32, choices=AuditEvent.choices)
    event_time = models.DateTimeField(default=timezone.now, db_index=True)
    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    payment = models.ForeignKey(
        Payment, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    allocation = models.ForeignKey(
        Allocation, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    credit = models.ForeignKey(
        Credit, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    amount_cents = models.BigIntegerField(null=True, blank=True, help_text="The money the event moved.")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    extra = models.JSONField(default=dict, blank=True)  # details; under "origin", where it came from (services.audit)
    backfilled = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["invoice", "event_time"], name="payments_audit_invoice_time"),
            models.Index(fields=["payment", "event_time"], name="payments_audit_payment_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_time:%Y-%m-%d %H:%M} {self.event_type}"


class BackfillRun(models.Model):
    """One run of the PAY-10 backfill; its cursor makes a killed run resumable.

    `state` is also the operator's hand on a running run (`payments.services.backfill_control`):
    PAUSED and CANCELLED are requests the runner obeys between batches; any unfinished run (not
    COMPLETED) is resumed by the next `pay10_backfill` of its scope. `counts` holds the run's
    tallies, its shard label (`shard`) and the console's live figures (`console`).
    """

    class State(models.TextChoices):
        RUNNING = "RUNNING"
        PAUSED = "PAUSED"
        CANCELLED = "CANCELLED"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    batch_size = models.PositiveIntegerField()
    upper_invoice_id = models.BigIntegerField(help_text="Highest invoice id when the run started.")
    cursor_invoice_id = models.BigIntegerField(default=0, help_text="Every invoice up to this id is done.")
    upper_payment_id = models.BigIntegerField(default=0, help_text="Highest payment id when the run started.")
    cursor_payment_id = models.BigIntegerField(default=0, help_text="Every legacy payment up to this id is done.")
    counts = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        shard = (self.counts or {}).get("shard")
        return f"backfill run {self.pk}" + (f" (shard {shard})" if shard else "")


class InvoiceMigration(models.Model):
    """Marks an invoice as migrated to the allocation model and keeps its legacy figures.

    An invoice without this row is read with its legacy paid figure; the reverse of
    `0003_pay10_backfill` restores `legacy_status` from here.
    """

    invoice = models.OneToOneField(
        "billing.Invoice", on_delete=models.PROTECT, primary_key=True, related_name="pay10_migration"
    )
    run = models.ForeignKey(BackfillRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    legacy_status = models.CharField(max_length=16)
    legacy_amount_paid_cents = models.BigIntegerField()
    legacy_paid_cents = models.BigIntegerField(help_text="The legacy paid figure the backfill allocated.")
    legacy_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The invoice's updated_at before PAY-10 touched it; the reverse restores it."
    )
    migrated_at = models.DateTimeField(default=timezone.now)


class PaymentMigration(models.Model):
    """Marks a legacy payment as mapped by the backfill (channel, verification status, its money placed)."""

    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, primary_key=True, related_name="pay10_migration")
    run = models.ForeignKey(BackfillRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    migrated_at = models.DateTimeField(default=timezone.now)


class BackfillDeviation(models.Model):
    """Where the backfill departed from the legacy data, for `--report` and for people to review."""

    # The planner's kinds (`payments.domain.backfill.DEVIATION_KINDS`): defined there, derived here.
    Kind = models.TextChoices("Kind", DEVIATION_KINDS)

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(BackfillRun, on_delete=models.PROTECT, null=True, blank=True, related_name="deviations")
    kind = models.CharField(max_length=40, choices=Kind.choices)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    invoice_number = models.CharField(max_length=64, blank=True, default="")
    payment = models.ForeignKey(
        Payment, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    legacy = models.JSONField(default=dict, blank=True)
    new = models.JSONField(default=dict, blank=True)
    detail = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "kind"], name="payments_deviation_tenant_kind")]


class FiguresState(models.TextChoices):
    """What today's status of an invoice depends on besides its due date (the status engine's inputs).

    `DRAFT` and `VOID` are explicit; otherwise `PAID` (paid >= amount), `PART` (0 < paid < amount)
    or `UNPAID` (nothing paid). PART and UNPAID become OVERDUE once the due date has passed.
    """

    DRAFT = "DRAFT"
    VOID = "VOID"
    PAID = "PAID"
    PART = "PART"
    UNPAID = "UNPAID"


NO_DUE_DAY = "9999-12-31"  # the rollup's key for "no due date" (a key column cannot be NULL)


class InvoiceFigures(models.Model):
    """One invoice's money as the readers see it (the figures of `invoices_with_balances`), kept by
    PostgreSQL at the commit of every transaction that changes them (`payments/database/figures_v1.py`).

    A cache for FIN-01/FIN-02 at scale, never the truth: `pay10_verify` checks it against the
    allocations and `pay10_rebuild_figures` rebuilds it. Days are UTC days.
    """

    invoice = models.OneToOneField(
        "billing.Invoice", on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="figures"
    )
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    currency = models.CharField(max_length=3)
    state = models.CharField(max_length=8, choices=FiguresState.choices)
    issue_day = models.DateField(help_text="UTC day of issued_at, else of created_at.")
    due_date = models.DateField(null=True, blank=True)
    amount_cents = models.BigIntegerField()
    paid_cents = models.BigIntegerField()
    pending_cents = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "state", "invoice"], name="payments_figures_tenant_state")]


class RollupTotals(models.Model):
    """The totals a rollup row keeps for its key, by deltas in the commit-time step that keeps the
    figures (`payments/database/figures_v1.py`)."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    currency = models.CharField(max_length=3)
    state = models.CharField(max_length=8, choices=FiguresState.choices)
    due_day = models.DateField(help_text=f"{NO_DUE_DAY} stands for no due date.")
    invoice_count = models.BigIntegerField(default=0)
    amount_cents = models.BigIntegerField(default=0)
    paid_cents = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class InvoiceRollup(RollupTotals):
    """`InvoiceFigures` added up per (tenant, currency, state, issue day, due day): what FIN-01 reads
    for a dated period (the period's issue days only)."""

    issue_day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "currency", "state", "issue_day", "due_day"], name="payments_rollup_key_unique"
            ),
        ]


class InvoiceDueRollup(RollupTotals):
    """`InvoiceRollup` without the issue day: per (tenant, currency, state, due day). FIN-01 over all
    time and the FIN-02 counts read it (a few hundred rows per tenant: one per due day and state)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "currency", "state", "due_day"], name="payments_due_rollup_key_unique"),
        ]


INVOICE_BLOCK_BITS = 10  # an invoice's block is its id >> 10: 1,024 consecutive ids


class InvoiceBlock(models.Model):
    """How many invoices of a tenant have ids in each block of 1,024 ids: FIN-02 finds the block
    holding its page's first row by adding these up from the newest block (a thousand rows for a
    million invoices), then skips at most 1,023 index entries, so every page costs the same. Kept with
    the figures, in the same commit-time step."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    block = models.BigIntegerField()
    invoice_count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "block"], name="payments_block_key_unique")]


class InvoiceFiguresBuild(models.Model):
    """Present while the figures are being built (`0005_invoice_figures_build`, `pay10_rebuild_figures`):
    readers compute live until it is gone. Its cursor makes a killed build resumable."""

    id = models.BigAutoField(primary_key=True)
    upper_invoice_id = models.BigIntegerField(default=0, help_text="Highest invoice id when the build started.")
    cursor_invoice_id = models.BigIntegerField(default=0, help_text="Every invoice up to this id is built.")
    started_at = models.DateTimeField(default=timezone.now)


class BalancePayment(models.Model):
    """A payment awaiting verification, with the money FIN-01 shows as pending verification: one row
    per such payment, kept by PostgreSQL at every commit (`payments/database/balances_v1.py`)."""

    payment = models.OneToOneField(
        Payment, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    tenant = models.ForeignKey(
        "billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    currency = models.CharField(max_length=3)
    pending_cents = models.BigIntegerField()


class BalanceCredit(models.Model):
    """A credit that holds money, with what it holds (`credits_with_balances`' `remaining_cents`): one
    row per such credit, kept by PostgreSQL at every commit (`payments/database/balances_v1.py`)."""

    credit = models.OneToOneField(
        Credit, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    tenant = models.ForeignKey(
        "billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    currency = models.CharField(max_length=3)
    remaining_cents = models.BigIntegerField()


BALANCE_SLOTS = 16  # `payments/database/balances_v1.py` SLOTS


class TenantBalance(models.Model):
    """FIN-01's pending verification (over all time) and unapplied credit of a tenant in a currency,
    spread over slots: each commit adds its difference to the slot of its transaction id, so
    concurrent writers of one tenant do not queue on one row; readers add the slots up."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(
        "billing.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    currency = models.CharField(max_length=3)
    slot = models.SmallIntegerField()
    pending_verification_cents = models.BigIntegerField(default=0)
    unapplied_credit_cents = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "currency", "slot"], name="payments_tenantbalance_key_unique"),
        ]


class TenantBalanceBuild(models.Model):
    """Present while the tenant balances are being built (`0011_tenant_balances`, `balances_rebuild`):
    readers compute live until it is gone. Its cursors make a killed build resumable."""

    id = models.BigAutoField(primary_key=True)
    upper_payment_id = models.BigIntegerField(default=0, help_text="Highest payment id when the build started.")
    cursor_payment_id = models.BigIntegerField(default=0, help_text="Every payment up to this id is built.")
    upper_credit_id = models.BigIntegerField(default=0, help_text="Highest credit id when the build started.")
    cursor_credit_id = models.BigIntegerField(default=0, help_text="Every credit up to this id is built.")
    started_at = models.DateTimeField(default=timezone.now)
