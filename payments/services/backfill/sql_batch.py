"""A batch planned and written in SQL (PostgreSQL): `batch`'s two entry points on that database.

The same locks, in the same order, as the Python path: the invoices (`FOR UPDATE`, ascending id),
then their legacy payments of the same tenant (ascending id); what is already migrated is read
after the lock and skipped. The batch is then staged in two session temporary tables (dropped at
commit) by one statement each, read after the locks:

- `_bf_i`, one row per invoice to migrate: its legacy paid figure (`rules.LEGACY_PAID`), the status
  engine's verdict (`rules.status_verdict`), its inconsistencies, later its shortfall;
- `_bf_p`, one row per payment to map: channel and verification status, the oldest-first
  allocation (a running sum over the invoice's allocatable payments ordered by `received_at`,
  id), its credit (amount, reason, deviation kind) and the kinds of its deviations.

The key-collision refusal comes before any write; then one statement per written table draws the
new ids from the sequences and builds every row, the deviations' and audit rows' JSON included, from
the staged rows. The rules' texts and tables are the Python planner's (`sql_rules` renders them);
`tests/payments/backfill/test_sql_batch.py` holds this path's rows equal to the Python path's.
"""
import json
from datetime import date

from django.db import connections
from django.utils import timezone

from payments.database import rules
from payments.domain import backfill as plan_rules
from payments.domain.backfill import Deviation
from payments.services.backfill import sql_rules
from payments.services.backfill.audit_payload import AUDIT_COLUMNS, INVOICE_BACKFILLED, PAYMENT_BACKFILLED
from payments.services.backfill.common import (
    AUDIT_ACTOR,
    KEY_COLLISION,
    BackfillError,
    BackfillModels,
    BatchResult,
    hook,
    ids_literal,
    quote_name,
)
from payments.services.backfill.writer import SYNTHETIC_VERIFICATION_STATUS
from payments.services.invoice_status import invoice_statuses_store_staged
from payments.services.origin import audit_origin

STAGED_INVOICES = "pg_temp._bf_i"
STAGED_PAYMENTS = "pg_temp._bf_p"


class _Tables:
    def __init__(self, m: BackfillModels) -> None:
        self.invoice = quote_name(m.Invoice._meta.db_table)
        self.tenant = quote_name(m.Tenant._meta.db_table)
        self.payment = quote_name(m.Payment._meta.db_table)
        self.allocation = quote_name(m.Allocation._meta.db_table)
        self.credit = quote_name(m.Credit._meta.db_table)
        self.audit = quote_name(m.PaymentAuditLog._meta.db_table)
        self.invoice_migration = quote_name(m.InvoiceMigration._meta.db_table)
        self.payment_migration = quote_name(m.PaymentMigration._meta.db_table)
        self.deviation = quote_name(m.BackfillDeviation._meta.db_table)
        self.payment_name = m.Payment._meta.db_table
        self.allocation_name = m.Allocation._meta.db_table
        self.credit_name = m.Credit._meta.db_table


def _next_id(table_name: str) -> str:
    return f"nextval(pg_get_serial_sequence({sql_rules.literal(table_name)}, 'id'))"


def _drop_staged(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {STAGED_INVOICES}, {STAGED_PAYMENTS}")


# --------------------------------------------------------------------------------------------
# Pass 1: invoices with their legacy payments of the same tenant.


def _stage_invoices(cursor, t: _Tables, ids: list[int], today: date) -> None:
    """Lock the invoices, then stage those not migrated yet (read after the lock)."""
    cursor.execute(
        f"SELECT count(*) FROM (SELECT id FROM {t.invoice} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE) l",
        [ids_literal(ids)],
    )
    verdict = rules.status_verdict("v.legacy_paid", "%(today)s::date")
    inconsistencies = sql_rules.legacy_inconsistencies("i.status", "i.amount_cents", "i.amount_paid_cents")
    cursor.execute(
        f"CREATE TEMP TABLE _bf_i ON COMMIT DROP AS "
        "SELECT i.id, i.tenant_id, i.number, i.currency, i.status, i.amount_cents, i.amount_paid_cents, i.updated_at, "
        "coalesce(i.paid_at, i.issued_at, i.created_at) AS synthetic_received_at, v.legacy_paid, "
        f"{verdict} AS new_status, {inconsistencies} AS inconsistencies, "
        "0::bigint AS succeeded_cents, 0::bigint AS synthetic_cents, NULL::bigint AS synthetic_id, "
        "NULL::bigint AS synthetic_allocation_id "
        f"FROM {t.invoice} i CROSS JOIN LATERAL (SELECT {rules.LEGACY_PAID} AS legacy_paid) v "
        "WHERE i.id = ANY(%(ids)s::bigint[]) "
        f"AND NOT EXISTS (SELECT 1 FROM {t.invoice_migration} m WHERE m.invoice_id = i.id)",
        {"ids": ids_literal(ids), "today": today},
    )


def _stage_invoice_payments(cursor, t: _Tables) -> None:
    """Lock the staged invoices' legacy payments of their tenant, then stage those still unmapped
    (read after the lock) with their allocation, oldest first, and their credit."""
    unmapped = (
        "p.verification_status IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {t.payment_migration} pm WHERE pm.payment_id = p.id)"
    )
    cursor.execute(
        f"SELECT count(*) FROM (SELECT p.id FROM {t.payment} p JOIN _bf_i i ON i.id = p.invoice_id "
        f"WHERE p.tenant_id = i.tenant_id AND {unmapped} ORDER BY p.id FOR UPDATE OF p) l"
    )
    succeeded = sql_rules.literal(plan_rules.SUCCEEDED)
    cursor.execute(
        "CREATE TEMP TABLE _bf_p ON COMMIT DROP AS "
        "SELECT s.*, "
        "  CASE WHEN s.amount_cents > s.allocated AND s.allocatable THEN s.amount_cents - s.allocated END AS credit_cents, "
        f"  CASE WHEN s.amount_cents > s.allocated AND s.allocatable "
        f"    THEN {sql_rules.leftover_reason('s.invoice_status', 's.legacy_paid', 's.invoice_number')} END AS credit_reason, "
        f"  CASE WHEN s.amount_cents > s.allocated AND s.allocatable "
        f"    THEN {sql_rules.leftover_kind('s.invoice_status', 's.legacy_paid')} END AS credit_kind, "
        "  false AS cross_tenant, NULL::text AS invoice_tenant_id, "
        "  NULL::bigint AS allocation_id, NULL::bigint AS credit_id "
        "FROM (SELECT w.*, "
        "  CASE WHEN w.allocatable THEN least(w.amount_cents, greatest(w.legacy_paid - w.before_cents, 0)) ELSE 0 END "
        "    AS allocated "
        "  FROM (SELECT r.*, "
        "    coalesce(sum(r.amount_cents) FILTER (WHERE r.allocatable) OVER (PARTITION BY r.invoice_id "
        "      ORDER BY r.received_at, r.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::bigint AS before_cents, "
        "    row_number() OVER (PARTITION BY r.invoice_id ORDER BY r.received_at, r.id) AS allocation_order "
        "    FROM (SELECT p.id, p.tenant_id, p.invoice_id, p.amount_cents, p.currency, p.method, p.status, "
        "      p.received_at, tn.currency AS tenant_currency, i.number AS invoice_number, i.status AS invoice_status, "
        f"      i.legacy_paid, {sql_rules.channel_for_method('p.method')} AS channel, "
        f"      {sql_rules.verification_status_for('p.status')} AS verification_status, "
        "      (p.currency <> tn.currency OR i.currency <> p.currency) AS mismatch, "
        f"      (p.currency = tn.currency AND i.currency = p.currency AND p.status = {succeeded}) AS allocatable "
        f"      FROM {t.payment} p JOIN _bf_i i ON i.id = p.invoice_id JOIN {t.tenant} tn ON tn.id = p.tenant_id "
        f"      WHERE p.tenant_id = i.tenant_id AND {unmapped}) r) w) s"
    )
    cursor.execute(
        "UPDATE _bf_i i SET succeeded_cents = a.succeeded, synthetic_cents = greatest(i.legacy_paid - a.allocated, 0) "
        "FROM (SELECT i2.id, coalesce(sum(p.amount_cents) FILTER (WHERE p.allocatable), 0)::bigint AS succeeded, "
        "      coalesce(sum(p.allocated), 0)::bigint AS allocated "
        "      FROM _bf_i i2 LEFT JOIN _bf_p p ON p.invoice_id = i2.id GROUP BY i2.id) a "
        "WHERE a.id = i.id"
    )


def _key_collision_check(cursor, t: _Tables) -> None:
    """Refuse the batch before writing anything when a payment already holds the idempotency key of
    a synthetic payment it would create (`writer._key_collision_check`'s rule and message)."""
    cursor.execute(
        f"SELECT p.id, p.tenant_id, p.idempotency_key, i.id FROM _bf_i i JOIN {t.payment} p "
        f"ON p.tenant_id = i.tenant_id AND p.idempotency_key = {sql_rules.literal(plan_rules.SYNTHETIC_KEY_PREFIX)} || i.id "
        "WHERE i.synthetic_cents > 0 ORDER BY p.id LIMIT 1"
    )
    row = cursor.fetchone()
    if row is not None:
        payment_id, tenant_id, key, invoice_id = row
        raise BackfillError(KEY_COLLISION.format(payment=payment_id, tenant=tenant_id, key=key, invoice=invoice_id))


def _draw_ids(cursor, t: _Tables) -> None:
    """The ids of the rows the batch refers to: synthetic payments, allocations, credits."""
    cursor.execute(
        f"UPDATE _bf_i SET synthetic_id = {_next_id(t.payment_name)}, "
        f"synthetic_allocation_id = {_next_id(t.allocation_name)} WHERE synthetic_cents > 0"
    )
    cursor.execute(
        f"UPDATE _bf_p SET allocation_id = CASE WHEN allocated > 0 THEN {_next_id(t.allocation_name)} END, "
        f"credit_id = CASE WHEN credit_cents IS NOT NULL THEN {_next_id(t.credit_name)} END "
        "WHERE allocated > 0 OR credit_cents IS NOT NULL"
    )


# --------------------------------------------------------------------------------------------
# Pass 2: legacy payments no invoice takes.


def _stage_detached_payments(cursor, t: _Tables, ids: list[int]) -> None:
    """Lock the payments (ascending id), then stage those still unmapped (read after the lock) but
    those linked to an unmigrated invoice of their tenant (another writer's invoice takes them)."""
    cursor.execute(
        f"SELECT count(*) FROM (SELECT id FROM {t.payment} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE) l",
        [ids_literal(ids)],
    )
    succeeded = sql_rules.literal(plan_rules.SUCCEEDED)
    reason_cross = sql_rules.text_format(
        plan_rules.REASON_CROSS_TENANT, invoice_id="s.invoice_id", invoice_tenant="s.invoice_tenant_id"
    )
    reason_migrated = sql_rules.text_format(plan_rules.REASON_MIGRATED_INVOICE, invoice_id="s.invoice_id")
    cursor.execute(
        "CREATE TEMP TABLE _bf_p ON COMMIT DROP AS "
        "SELECT s.id, s.tenant_id, s.invoice_id, s.amount_cents, s.currency, s.method, s.status, s.received_at, "
        "  s.tenant_currency, s.invoice_number, NULL::text AS invoice_status, NULL::bigint AS legacy_paid, "
        "  s.channel, s.verification_status, s.mismatch, false AS allocatable, 0::bigint AS before_cents, "
        "  0::bigint AS allocation_order, 0::bigint AS allocated, "
        "  nullif(s.credited, 0) AS credit_cents, "
        "  CASE WHEN s.credited = 0 THEN NULL WHEN s.cross_tenant THEN " + reason_cross +
        f"    WHEN s.invoice_id IS NULL THEN {sql_rules.literal(plan_rules.REASON_UNLINKED)} "
        f"    ELSE {reason_migrated} END AS credit_reason, "
        "  CASE WHEN s.credited = 0 OR s.cross_tenant THEN NULL "
        f"    WHEN s.invoice_id IS NULL THEN '{Deviation.UNLINKED_PAYMENT_TO_CREDIT}' "
        f"    ELSE '{Deviation.OVERPAYMENT_TO_CREDIT}' END AS credit_kind, "
        "  s.cross_tenant, s.invoice_tenant_id, NULL::bigint AS allocation_id, NULL::bigint AS credit_id "
        "FROM (SELECT r.*, CASE WHEN r.mismatch OR r.status <> " + succeeded + " THEN 0 ELSE r.amount_cents END "
        "    AS credited "
        "  FROM (SELECT p.id, p.tenant_id, p.invoice_id, p.amount_cents, p.currency, p.method, p.status, "
        "    p.received_at, tn.currency AS tenant_currency, coalesce(i.number, '') AS invoice_number, "
        f"    {sql_rules.channel_for_method('p.method')} AS channel, "
        f"    {sql_rules.verification_status_for('p.status')} AS verification_status, "
        "    p.currency <> tn.currency AS mismatch, "
        "    (p.invoice_id IS NOT NULL AND i.tenant_id <> p.tenant_id) AS cross_tenant, i.tenant_id AS invoice_tenant_id "
        f"    FROM {t.payment} p JOIN {t.tenant} tn ON tn.id = p.tenant_id "
        f"    LEFT JOIN {t.invoice} i ON i.id = p.invoice_id "
        "    WHERE p.id = ANY(%s::bigint[]) AND p.verification_status IS NULL "
        f"    AND NOT EXISTS (SELECT 1 FROM {t.payment_migration} pm WHERE pm.payment_id = p.id) "
        "    AND NOT (p.invoice_id IS NOT NULL AND i.tenant_id = p.tenant_id "
        f"      AND NOT EXISTS (SELECT 1 FROM {t.invoice_migration} m WHERE m.invoice_id = p.invoice_id))"
        "  ) r) s",
        [ids_literal(ids)],
    )
    # No invoice in this half of the batch: an empty `_bf_i` of the same shape keeps the writes one text.
    cursor.execute(
        "CREATE TEMP TABLE _bf_i ON COMMIT DROP AS SELECT NULL::bigint AS id, NULL::text AS tenant_id, "
        "NULL::text AS number, NULL::text AS currency, NULL::text AS status, NULL::bigint AS amount_cents, "
        "NULL::bigint AS amount_paid_cents, NULL::timestamptz AS updated_at, NULL::timestamptz AS synthetic_received_at, "
        "NULL::bigint AS legacy_paid, NULL::text AS new_status, NULL::text AS inconsistencies, "
        "0::bigint AS succeeded_cents, 0::bigint AS synthetic_cents, NULL::bigint AS synthetic_id, "
        "NULL::bigint AS synthetic_allocation_id WHERE false"
    )


# --------------------------------------------------------------------------------------------
# The writes: one statement per table, from the staged rows.


def _allocations_sql() -> str:
    """Every allocation of the batch: (id, invoice id, tenant, payment id, cents, order within its
    invoice: the payments oldest first, the synthetic payment last)."""
    return (
        "SELECT allocation_id AS id, invoice_id, tenant_id, id AS payment_id, allocated AS amount_cents, "
        "allocation_order AS ord FROM _bf_p WHERE allocated > 0 "
        "UNION ALL SELECT synthetic_allocation_id, id, tenant_id, synthetic_id, synthetic_cents, 9223372036854775807 "
        "FROM _bf_i WHERE synthetic_cents > 0"
    )


def _listed(alias: str) -> str:
    return (
        f"jsonb_build_object('allocationId', {alias}.id, 'invoiceId', {alias}.invoice_id, "
        f"'paymentId', {alias}.payment_id, 'amountCents', {alias}.amount_cents)"
    )


def _invoice_kinds() -> str:
    return (
        f"array_remove(ARRAY[CASE WHEN i.synthetic_cents > 0 THEN '{Deviation.SHORTFALL_COVERED}' END, "
        f"CASE WHEN i.inconsistencies IS NOT NULL THEN '{Deviation.INCONSISTENT_LEGACY_FIGURES}' END, "
        f"CASE WHEN i.new_status <> i.status THEN '{Deviation.STATUS_CHANGED}' END], NULL)"
    )


def _payment_kinds() -> str:
    return (
        f"array_remove(ARRAY[CASE WHEN p.cross_tenant THEN '{Deviation.CROSS_TENANT_LINK}' END, "
        f"CASE WHEN p.mismatch THEN '{Deviation.CURRENCY_MISMATCH}' END, p.credit_kind], NULL)"
    )


def _write(cursor, t: _Tables, m: BackfillModels, *, using: str, run_id: int | None, batch_number: int) -> None:
    now = timezone.now()
    params = {"now": now, "run": run_id}
    cursor.execute(
        f"INSERT INTO {t.payment} (id, tenant_id, invoice_id, amount_cents, currency, method, reference, status, "
        "received_at, created_at, channel, verification_status, idempotency_key) "
        f"SELECT synthetic_id, tenant_id, id, synthetic_cents, currency, {sql_rules.literal(plan_rules.SYNTHETIC_METHOD)}, "
        f"{sql_rules.literal(plan_rules.SYNTHETIC_KEY_PREFIX)} || id, {sql_rules.literal(plan_rules.SUCCEEDED)}, "
        f"synthetic_received_at, %(now)s, {sql_rules.literal(plan_rules.SYNTHETIC_CHANNEL)}, "
        f"{sql_rules.literal(SYNTHETIC_VERIFICATION_STATUS)}, {sql_rules.literal(plan_rules.SYNTHETIC_KEY_PREFIX)} || id "
        "FROM _bf_i WHERE synthetic_cents > 0 ORDER BY id",
        params,
    )
    cursor.execute(
        f"UPDATE {t.payment} p SET channel = s.channel, verification_status = s.verification_status "
        "FROM _bf_p s WHERE p.id = s.id"
    )
    cursor.execute(
        f"INSERT INTO {t.allocation} (id, invoice_id, payment_id, amount_cents, tenant_id, backfilled, created_at) "
        f"SELECT id, invoice_id, payment_id, amount_cents, tenant_id, true, %(now)s FROM ({_allocations_sql()}) a "
        "ORDER BY id",
        params,
    )
    cursor.execute(
        f"INSERT INTO {t.credit} (id, tenant_id, currency, amount_cents, source_payment_id, reason, backfilled, "
        "created_at) SELECT credit_id, tenant_id, currency, credit_cents, id, credit_reason, true, %(now)s "
        "FROM _bf_p WHERE credit_cents IS NOT NULL ORDER BY credit_id",
        params,
    )
    cursor.execute(
        f"INSERT INTO {t.invoice_migration} (invoice_id, run_id, legacy_status, legacy_amount_paid_cents, "
        "legacy_paid_cents, legacy_updated_at, migrated_at) "
        "SELECT id, %(run)s, status, amount_paid_cents, legacy_paid, updated_at, %(now)s FROM _bf_i ORDER BY id",
        params,
    )
    cursor.execute(
        f"INSERT INTO {t.payment_migration} (payment_id, run_id, migrated_at) "
        "SELECT id, %(run)s, %(now)s FROM _bf_p ORDER BY id",
        params,
    )
    hook("mid-batch", batch_number)

    invoice_statuses_store_staged(
        "SELECT id, new_status AS status FROM _bf_i WHERE new_status <> status", now=now, using=using,
        invoice_model=m.Invoice,
    )

    d = Deviation
    cursor.execute(
        f"INSERT INTO {t.deviation} (run_id, kind, tenant_id, invoice_id, invoice_number, payment_id, legacy, new, "
        "detail, created_at) "
        "SELECT %(run)s, kind, tenant_id, invoice_id, invoice_number, payment_id, legacy, new, left(detail, 255), "
        "%(now)s FROM ("
        # an invoice's: shortfall, inconsistent figures, status change (the planner's order)
        f"SELECT i.id AS invoice_id, 1 AS k, '{d.SHORTFALL_COVERED}' AS kind, i.tenant_id, i.number AS invoice_number, "
        "i.synthetic_id AS payment_id, "
        "jsonb_build_object('paidCents', i.legacy_paid, 'succeededPaymentsCents', i.succeeded_cents) AS legacy, "
        "jsonb_build_object('syntheticPaymentCents', i.synthetic_cents) AS new, "
        f"{sql_rules.text_format(plan_rules.DETAIL_SHORTFALL, paid='i.legacy_paid')} AS detail "
        "FROM _bf_i i WHERE i.synthetic_cents > 0 "
        f"UNION ALL SELECT i.id, 2, '{d.INCONSISTENT_LEGACY_FIGURES}', i.tenant_id, i.number, NULL, "
        "jsonb_build_object('status', i.status, 'amountCents', i.amount_cents, 'amountPaidCents', i.amount_paid_cents), "
        "jsonb_build_object('paidCents', i.legacy_paid), i.inconsistencies "
        "FROM _bf_i i WHERE i.inconsistencies IS NOT NULL "
        f"UNION ALL SELECT i.id, 3, '{d.STATUS_CHANGED}', i.tenant_id, i.number, NULL, "
        "jsonb_build_object('status', i.status), jsonb_build_object('status', i.new_status, 'paidCents', i.legacy_paid), "
        f"{sql_rules.text_format(plan_rules.DETAIL_STATUS_CHANGED, old='i.status', new='i.new_status')} "
        "FROM _bf_i i WHERE i.new_status <> i.status "
        # a payment's: cross-tenant link, currency mismatch, credit
        f"UNION ALL SELECT p.invoice_id, 4, '{d.CROSS_TENANT_LINK}', p.tenant_id, p.invoice_number, p.id, "
        "jsonb_build_object('invoiceId', p.invoice_id, 'invoiceTenant', p.invoice_tenant_id, "
        "'paymentTenant', p.tenant_id, 'status', p.status), "
        "jsonb_build_object('allocatedCents', 0, 'creditCents', coalesce(p.credit_cents, 0)), "
        f"{sql_rules.literal(plan_rules.DETAIL_CROSS_TENANT)} FROM _bf_p p WHERE p.cross_tenant "
        f"UNION ALL SELECT p.invoice_id, 5, '{d.CURRENCY_MISMATCH}', p.tenant_id, p.invoice_number, p.id, "
        "jsonb_build_object('paymentCurrency', p.currency, 'amountCents', p.amount_cents, 'status', p.status), "
        "jsonb_build_object('tenantCurrency', p.tenant_currency, 'allocatedCents', 0, 'creditCents', 0), "
        f"{sql_rules.currency_mismatch_detail('p.currency', 'p.tenant_currency')} FROM _bf_p p WHERE p.mismatch "
        "UNION ALL SELECT p.invoice_id, 6, p.credit_kind, p.tenant_id, p.invoice_number, p.id, "
        "jsonb_build_object('paymentCents', p.amount_cents, 'invoiceStatus', p.invoice_status), "
        "jsonb_build_object('allocatedCents', p.allocated, 'creditCents', p.credit_cents), p.credit_reason "
        "FROM _bf_p p WHERE p.credit_kind IS NOT NULL"
        ") v ORDER BY invoice_id, payment_id NULLS FIRST, k",
        params,
    )

    extra = "jsonb_build_object('runId', %(run)s::bigint, 'deviations', to_jsonb({kinds}), 'origin', %(origin)s::jsonb)"
    columns = ", ".join(AUDIT_COLUMNS)
    cursor.execute(
        f"WITH a AS ({_allocations_sql()}), "
        f"listed AS (SELECT a.invoice_id, jsonb_agg({_listed('a')} ORDER BY a.ord) AS allocations FROM a "
        "GROUP BY a.invoice_id) "
        f"INSERT INTO {t.audit} ({columns}) "
        f"SELECT i.tenant_id, {sql_rules.literal(AUDIT_ACTOR)}, '{INVOICE_BACKFILLED}', %(now)s, i.id, i.synthetic_id, "
        "NULL::bigint, i.legacy_paid, "
        "jsonb_build_object('status', i.status, 'amountPaidCents', i.amount_paid_cents), "
        "jsonb_build_object('status', i.new_status, 'paidCents', i.legacy_paid, "
        "  'allocations', coalesce(l.allocations, '[]'::jsonb), "
        "  'syntheticPaymentId', i.synthetic_id, 'syntheticPaymentCents', i.synthetic_cents), "
        f"{extra.format(kinds=_invoice_kinds())}, true FROM _bf_i i LEFT JOIN listed l ON l.invoice_id = i.id "
        f"UNION ALL SELECT p.tenant_id, {sql_rules.literal(AUDIT_ACTOR)}, '{PAYMENT_BACKFILLED}', %(now)s, p.invoice_id, "
        "p.id, p.credit_id, p.amount_cents, jsonb_build_object('status', p.status, 'method', p.method), "
        "jsonb_build_object('channel', p.channel, 'verificationStatus', p.verification_status, "
        "  'allocations', CASE WHEN p.allocated > 0 THEN jsonb_build_array(jsonb_build_object("
        "    'allocationId', p.allocation_id, 'invoiceId', p.invoice_id, 'paymentId', p.id, "
        "    'amountCents', p.allocated)) ELSE '[]'::jsonb END, "
        "  'credit', CASE WHEN p.credit_id IS NOT NULL THEN jsonb_build_object('creditId', p.credit_id, "
        "    'amountCents', p.credit_cents, 'reason', p.credit_reason) END), "
        f"{extra.format(kinds=_payment_kinds())}, true FROM _bf_p p",
        params | {"origin": json.dumps(audit_origin())},
    )


def _result(cursor) -> BatchResult:
    result = BatchResult()
    cursor.execute("SELECT number, status, new_status <> status, synthetic_cents > 0 FROM _bf_i ORDER BY id")
    for number, status, changed, synthetic in cursor.fetchall():
        result.by_legacy_status[status] += 1
        result.migrated_invoices.append((number, status))
        result.statuses_changed += changed
        result.synthetic_payments += synthetic
    cursor.execute(
        "SELECT coalesce(array_agg(id), '{}'), count(*) FILTER (WHERE allocated > 0), "
        "count(*) FILTER (WHERE credit_cents IS NOT NULL), "
        f"coalesce(sum(cardinality({_payment_kinds()})), 0) FROM _bf_p p"
    )
    ids, allocations, credits, payment_deviations = cursor.fetchone()
    result.payments = len(ids)
    result.migrated_payment_ids = set(ids)
    result.allocations = allocations + result.synthetic_payments
    result.credits = credits
    cursor.execute(f"SELECT coalesce(sum(cardinality({_invoice_kinds()})), 0) FROM _bf_i i")
    result.deviations = payment_deviations + cursor.fetchone()[0]
    return result


def _finish(cursor, t: _Tables, m: BackfillModels, *, using: str, run_id: int | None, batch_number: int,
            has_synthetics: bool) -> BatchResult:
    if has_synthetics:
        _key_collision_check(cursor, t)
    _draw_ids(cursor, t)
    _write(cursor, t, m, using=using, run_id=run_id, batch_number=batch_number)
    result = _result(cursor)
    _drop_staged(cursor)
    return result


def invoices_migrate(
    m: BackfillModels, *, using: str, ids: list[int], run_id: int | None, today: date, batch_number: int
) -> BatchResult:
    """`batch.invoices_migrate` planned and written in SQL."""
    t = _Tables(m)
    with connections[using].cursor() as cursor:
        _drop_staged(cursor)
        _stage_invoices(cursor, t, ids, today)
        cursor.execute("SELECT count(*) FROM _bf_i")
        if not cursor.fetchone()[0]:
            _drop_staged(cursor)
            return BatchResult()
        _stage_invoice_payments(cursor, t)
        return _finish(cursor, t, m, using=using, run_id=run_id, batch_number=batch_number, has_synthetics=True)


def payments_migrate(
    m: BackfillModels, *, using: str, ids: list[int], run_id: int | None, batch_number: int
) -> BatchResult:
    """The detached half of `batch.detached_payments_migrate` planned and written in SQL (the
    payments' own unmigrated invoices of their tenant are migrated first, by the caller)."""
    t = _Tables(m)
    with connections[using].cursor() as cursor:
        _drop_staged(cursor)
        _stage_detached_payments(cursor, t, ids)
        cursor.execute("SELECT count(*) FROM _bf_p")
        if not cursor.fetchone()[0]:
            _drop_staged(cursor)
            return BatchResult()
        return _finish(cursor, t, m, using=using, run_id=run_id, batch_number=batch_number, has_synthetics=False)
