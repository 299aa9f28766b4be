"""The backfill's writer: a batch's plans in, its rows written, its tally out.

Interface: `write_batch(m, plan=BatchPlan(...), using=..., run_id=..., batch_number=...)` runs in
the caller's transaction, with every row the plans name locked by the readers, and returns the
batch's `BatchResult`. Whatever the batch size it is a fixed handful of set-based statements: COPY
on PostgreSQL (`_write_copy`), bulk_create elsewhere (`_write_orm`); the same rows and values
either way (a test compares them). Both take their audit rows from `audit_payload.audit_rows` and
store changed invoice statuses through `payments.services.invoice_status.invoice_statuses_store`.
"""
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connections
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
    ids_literal,
    quote_name,
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
    writer = _write_copy if connections[using].vendor == "postgresql" else _write_orm
    return writer(m, plan=plan, using=using, run_id=run_id, batch_number=batch_number)


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


def _next_ids(cursor, table: str, count: int) -> list[int]:
    """`count` fresh ids from the table's identity sequence, ascending (one round trip)."""
    if not count:
        return []
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
    )
    return sorted(row[0] for row in cursor.fetchall())


def _copy_rows(cursor, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Stream rows into the table with COPY (text format: psycopg adapts each Python value)."""
    statement = f"COPY {quote_name(table)} ({', '.join(columns)}) FROM STDIN"
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _write_copy(m: BackfillModels, *, plan: BatchPlan, using: str, run_id: int | None, batch_number: int) -> BatchResult:
    """`write_batch` on PostgreSQL: the same rows and values, streamed with COPY.

    Ids the batch refers to (synthetic payments, allocations, credits) are drawn from their
    sequences first, in one statement each, so no model instance is built and no row is read back.
    """
    now = timezone.now()
    all_payment_plans = plan.all_payment_plans
    payment_table = m.Payment._meta.db_table
    allocation_table = m.Allocation._meta.db_table
    credit_table = m.Credit._meta.db_table
    dumps = json.dumps

    synthetics = [p.synthetic for p in plan.invoice_plans if p.synthetic is not None]
    planned_allocations = [planned for p in plan.invoice_plans for planned in p.allocations]
    planned_credits = [p.credit for p in all_payment_plans if p.credit is not None]

    with connections[using].cursor() as cursor:
        synthetic_ids = dict(
            zip((s.invoice_id for s in synthetics), _next_ids(cursor, payment_table, len(synthetics)))
        )
        allocation_ids = _next_ids(cursor, allocation_table, len(planned_allocations))
        credit_ids = _next_ids(cursor, credit_table, len(planned_credits))

        _copy_rows(
            cursor, payment_table,
            ("id", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "reference", "status",
             "received_at", "created_at", "channel", "verification_status", "idempotency_key"),
            (
                (synthetic_ids[s.invoice_id], s.tenant_id, s.invoice_id, s.amount_cents, s.currency,
                 plan_rules.SYNTHETIC_METHOD, s.idempotency_key, plan_rules.SUCCEEDED, s.received_at, now,
                 plan_rules.SYNTHETIC_CHANNEL, SYNTHETIC_VERIFICATION_STATUS, s.idempotency_key)
                for s in synthetics
            ),
        )

        # Every mapped payment in one statement: each payment's (channel, verification status) is
        # sent as its ordinal in the short list of distinct pairs.
        if all_payment_plans:
            pairs: dict[tuple[str, str], int] = {}
            ordinals = [pairs.setdefault((p.channel, p.verification_status), len(pairs) + 1) for p in all_payment_plans]
            cursor.execute(
                f"UPDATE {quote_name(payment_table)} p "
                "SET channel = m.channel, verification_status = m.verification_status "
                "FROM unnest(%s::bigint[], %s::int[]) AS v(id, k) "
                "JOIN unnest(%s::text[], %s::text[]) WITH ORDINALITY AS m(channel, verification_status, k) "
                "ON m.k = v.k WHERE p.id = v.id",
                [
                    ids_literal(p.payment.id for p in all_payment_plans),
                    ids_literal(ordinals),
                    [channel for channel, _ in pairs],
                    [verification_status for _, verification_status in pairs],
                ],
            )

        # (id, invoice_id, payment_id, amount_cents) of every allocation, for the rows and the audit.
        allocations = [
            (allocation_id, planned.invoice_id,
             planned.payment_id if planned.payment_id is not None else synthetic_ids[planned.invoice_id],
             planned.amount_cents)
            for allocation_id, planned in zip(allocation_ids, planned_allocations)
        ]
        _copy_rows(
            cursor, allocation_table,
            ("id", "invoice_id", "payment_id", "amount_cents", "tenant_id", "backfilled", "created_at"),
            ((*row, planned.tenant_id, True, now) for row, planned in zip(allocations, planned_allocations)),
        )
        _copy_rows(
            cursor, credit_table,
            ("id", "tenant_id", "currency", "amount_cents", "source_payment_id", "reason", "backfilled", "created_at"),
            (
                (credit_id, c.tenant_id, c.currency, c.amount_cents, c.source_payment_id, c.reason, True, now)
                for credit_id, c in zip(credit_ids, planned_credits)
            ),
        )
        _copy_rows(
            cursor, m.InvoiceMigration._meta.db_table,
            ("invoice_id", "run_id", "legacy_status", "legacy_amount_paid_cents", "legacy_paid_cents",
             "legacy_updated_at", "migrated_at"),
            (
                (p.invoice.id, run_id, p.invoice.status, p.invoice.amount_paid_cents, p.legacy_paid_cents,
                 plan.legacy_updated_at.get(p.invoice.id), now)
                for p in plan.invoice_plans
            ),
        )
        _copy_rows(
            cursor, m.PaymentMigration._meta.db_table,
            ("payment_id", "run_id", "migrated_at"),
            ((p.payment.id, run_id, now) for p in all_payment_plans),
        )
        hook("mid-batch", batch_number)

        changes = plan.status_changes()
        invoice_statuses_store(changes, now=now, using=using, invoice_model=m.Invoice)

        deviations = plan.deviations()
        _copy_rows(
            cursor, m.BackfillDeviation._meta.db_table,
            ("run_id", "kind", "tenant_id", "invoice_id", "invoice_number", "payment_id", "legacy", "new", "detail",
             "created_at"),
            (
                (run_id, d.kind, d.tenant_id, d.invoice_id, d.invoice_number,
                 synthetic_ids[d.invoice_id] if d.synthetic else d.payment_id, dumps(d.legacy), dumps(d.new),
                 d.detail[:255], now)
                for d in deviations
            ),
        )

        rows = audit_rows(
            invoice_plans=plan.invoice_plans,
            payment_plans=all_payment_plans,
            allocations=allocations,
            synthetic_ids=synthetic_ids,
            credit_by_payment={c.source_payment_id: (credit_id, c) for credit_id, c in zip(credit_ids, planned_credits)},
            run_id=run_id,
            now=now,
        )
        # jsonb keeps no formatting: `json.dumps` of the payload dicts is the document.
        _copy_rows(
            cursor, m.PaymentAuditLog._meta.db_table,
            AUDIT_COLUMNS,
            ((*row[:8], dumps(row[8]), dumps(row[9]), dumps(row[10]), row[11]) for row in rows),
        )

    return _result(
        plan, synthetic_payments=len(synthetics), allocations=len(allocations), credits=len(planned_credits),
        deviations=len(deviations), statuses_changed=len(changes),
    )
