"""The Python path's writer (SQLite; PostgreSQL plans and writes in SQL, `sql_batch`): a batch's
plans in, its rows written, its tally out.

Interface: `write_batch(m, plan=BatchPlan(...), using=..., run_id=..., batch_number=...)` runs in
the caller's transaction, with every row the plans name locked by the readers, and returns the
batch's `BatchResult`. Whatever the batch size it is a fixed handful of bulk_create and update
statements; its audit rows come from `audit_payload.audit_rows`, changed invoice statuses are
stored through `payments.services.invoice_status.invoice_statuses_store`.
"""
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from payments.domain import backfill as plan_rules
from payments.domain.backfill import InvoicePlan, PaymentPlan, PlannedDeviation
from payments.services.backfill.audit_payload import AUDIT_COLUMNS, audit_rows
from payments.services.backfill.common import (
    KEY_COLLISION,
    BackfillError,
    BackfillModels,
    BatchResult,
    hook,
)
from payments.services.invoice_status import invoice_statuses_store

SYNTHETIC_VERIFICATION_STATUS = "VERIFIED"


@dataclass
class BatchPlan:
    """What one batch writes: migrated invoices (with their payments) and detached payments."""

    invoice_plans: list[InvoicePlan] = field(default_factory=list)
    payment_plans: list[PaymentPlan] = field(default_factory=list)
    legacy_updated_at: dict = field(default_factory=dict)  # invoice id -> its legacy `updated_at`

    @property
    def all_payment_plans(self) -> list[PaymentPlan]:
        return [p for plan in self.invoice_plans for p in plan.payments] + self.payment_plans

    def status_changes(self) -> dict[int, str]:
        return {plan.invoice.id: plan.new_status for plan in self.invoice_plans if plan.new_status != plan.invoice.status}

    def deviations(self) -> list[PlannedDeviation]:
        return [d for plan in self.invoice_plans for d in plan.deviations] + [
            d for plan in self.all_payment_plans for d in plan.deviations
        ]


def write_batch(m: BackfillModels, *, plan: BatchPlan, using: str, run_id: int | None, batch_number: int) -> BatchResult:
    """Write the plans (refusing the whole batch first on a key collision); see the module docstring."""
    _key_collision_check(m, using=using, invoice_plans=plan.invoice_plans)
    return _write_orm(m, plan=plan, using=using, run_id=run_id, batch_number=batch_number)


def _key_collision_check(m: BackfillModels, *, using: str, invoice_plans: list[InvoicePlan]) -> None:
    """Refuse the batch (`BackfillError`, before writing anything) when a payment already holds the
    idempotency key of a synthetic payment it would create (a client's key in the reserved
    `pay10-backfill:` namespace, recorded before the API refused them). One indexed query."""
    wanted = {(plan.synthetic.tenant_id, plan.synthetic.idempotency_key): plan.synthetic.invoice_id
              for plan in invoice_plans if plan.synthetic is not None}
    if not wanted:
        return
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant_id, key in wanted:
        by_tenant[tenant_id].append(key)
    condition = Q()
    for tenant_id, keys in by_tenant.items():
        condition |= Q(tenant_id=tenant_id, idempotency_key__in=keys)
    taken = m.Payment.objects.using(using).filter(condition).order_by("pk").values_list("pk", "tenant_id", "idempotency_key")
    for payment_id, tenant_id, key in taken[:1]:
        raise BackfillError(
            KEY_COLLISION.format(payment=payment_id, tenant=tenant_id, key=key, invoice=wanted[(tenant_id, key)])
        )


def _result(plan: BatchPlan, *, synthetic_payments: int, allocations: int, credits: int, deviations: int,
            statuses_changed: int) -> BatchResult:
    result = BatchResult()
    for invoice_plan in plan.invoice_plans:
        result.by_legacy_status[invoice_plan.invoice.status] += 1
        result.migrated_invoices.append((invoice_plan.invoice.number, invoice_plan.invoice.status))
    all_payment_plans = plan.all_payment_plans
    result.payments = len(all_payment_plans)
    result.migrated_payment_ids = {payment_plan.payment.id for payment_plan in all_payment_plans}
    result.synthetic_payments = synthetic_payments
    result.allocations = allocations
    result.credits = credits
    result.deviations = deviations
    result.statuses_changed = statuses_changed
    return result


def _write_orm(m: BackfillModels, *, plan: BatchPlan, using: str, run_id: int | None, batch_number: int) -> BatchResult:
    """`write_batch` with model instances and bulk_create (SQLite)."""
    now = timezone.now()
    all_payment_plans = plan.all_payment_plans
    synthetics = [p.synthetic for p in plan.invoice_plans if p.synthetic is not None]
    synthetic_rows = [
        m.Payment(
            tenant_id=s.tenant_id, invoice_id=s.invoice_id, amount_cents=s.amount_cents, currency=s.currency,
            method=plan_rules.SYNTHETIC_METHOD, reference=s.idempotency_key, status=plan_rules.SUCCEEDED,
            received_at=s.received_at, created_at=now, channel=plan_rules.SYNTHETIC_CHANNEL,
            verification_status=SYNTHETIC_VERIFICATION_STATUS, idempotency_key=s.idempotency_key,
        )
        for s in synthetics
    ]
    m.Payment.objects.using(using).bulk_create(synthetic_rows)
    synthetic_ids = {row.invoice_id: row.pk for row in synthetic_rows}

    mappings: dict[tuple[str, str], list[int]] = defaultdict(list)
    for payment_plan in all_payment_plans:
        mappings[(payment_plan.channel, payment_plan.verification_status)].append(payment_plan.payment.id)
    for (channel, verification_status), ids in mappings.items():
        m.Payment.objects.using(using).filter(pk__in=ids).update(channel=channel, verification_status=verification_status)

    allocation_rows = [
        m.Allocation(
            tenant_id=planned.tenant_id,
            invoice_id=planned.invoice_id,
            payment_id=planned.payment_id if planned.payment_id is not None else synthetic_ids[planned.invoice_id],
            amount_cents=planned.amount_cents,
            backfilled=True,
            created_at=now,
        )
        for invoice_plan in plan.invoice_plans
        for planned in invoice_plan.allocations
    ]
    m.Allocation.objects.using(using).bulk_create(allocation_rows)

    planned_credits = [p.credit for p in all_payment_plans if p.credit is not None]
    credit_rows = [
        m.Credit(
            tenant_id=c.tenant_id, currency=c.currency, amount_cents=c.amount_cents,
            source_payment_id=c.source_payment_id, reason=c.reason, backfilled=True, created_at=now,
        )
        for c in planned_credits
    ]
    m.Credit.objects.using(using).bulk_create(credit_rows)

    m.InvoiceMigration.objects.using(using).bulk_create(
        m.InvoiceMigration(
            invoice_id=p.invoice.id,
            run_id=run_id,
            legacy_status=p.invoice.status,
            legacy_amount_paid_cents=p.invoice.amount_paid_cents,
            legacy_paid_cents=p.legacy_paid_cents,
            legacy_updated_at=plan.legacy_updated_at.get(p.invoice.id),
            migrated_at=now,
        )
        for p in plan.invoice_plans
    )
    m.PaymentMigration.objects.using(using).bulk_create(
        m.PaymentMigration(payment_id=p.payment.id, run_id=run_id, migrated_at=now) for p in all_payment_plans
    )
    hook("mid-batch", batch_number)

    changes = plan.status_changes()
    invoice_statuses_store(changes, now=now, using=using, invoice_model=m.Invoice)

    deviations = plan.deviations()
    m.BackfillDeviation.objects.using(using).bulk_create(
        m.BackfillDeviation(
            run_id=run_id, kind=d.kind, tenant_id=d.tenant_id, invoice_id=d.invoice_id,
            invoice_number=d.invoice_number, payment_id=synthetic_ids[d.invoice_id] if d.synthetic else d.payment_id,
            legacy=d.legacy, new=d.new, detail=d.detail[:255], created_at=now,
        )
        for d in deviations
    )

    rows = audit_rows(
        invoice_plans=plan.invoice_plans,
        payment_plans=all_payment_plans,
        allocations=[(r.pk, r.invoice_id, r.payment_id, r.amount_cents) for r in allocation_rows],
        synthetic_ids=synthetic_ids,
        credit_by_payment={c.source_payment_id: (row.pk, c) for row, c in zip(credit_rows, planned_credits)},
        run_id=run_id,
        now=now,
    )
    m.PaymentAuditLog.objects.using(using).bulk_create(m.PaymentAuditLog(**dict(zip(AUDIT_COLUMNS, row))) for row in rows)
    return _result(
        plan, synthetic_payments=len(synthetic_rows), allocations=len(allocation_rows), credits=len(credit_rows),
        deviations=len(deviations), statuses_changed=len(changes),
    )
