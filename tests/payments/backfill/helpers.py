"""Shared helpers of the backfill's tests (no test module imports another)."""
import json
from pathlib import Path

from django.db import connection

from billing.models import Invoice
from payments.models import (
    Allocation,
    BackfillDeviation,
    Credit,
    InvoiceMigration,
    Payment,
    PaymentAuditLog,
    PaymentMigration,
)

ROOT = Path(__file__).resolve().parents[3]


class Crash(Exception):
    pass


def money_state() -> dict:
    """Everything the backfill writes, without ids of its own rows or timestamps (synthetic payments
    are named by their invoice), so that two runs can be compared."""
    synthetic = dict(Payment.objects.filter(channel="LEGACY").values_list("pk", "invoice_id"))

    def payment_key(pk):
        return ("synthetic", synthetic[pk]) if pk in synthetic else ("payment", pk)

    def ordered(rows):
        return sorted(rows, key=repr)

    credit_keys = {pk: (source, reason) for pk, source, reason in Credit.objects.values_list("pk", "source_payment_id", "reason")}
    return {
        "invoices": ordered(Invoice.objects.values_list("pk", "status")),
        "payments": ordered(
            (payment_key(pk), *rest)
            for pk, *rest in Payment.objects.values_list(
                "pk", "tenant_id", "invoice_id", "amount_cents", "currency", "method", "status", "received_at",
                "channel", "verification_status", "idempotency_key",
            )
        ),
        "allocations": ordered(
            (invoice, payment_key(payment) if payment else None, credit_keys.get(credit), amount, backfilled)
            for invoice, payment, credit, amount, backfilled in Allocation.objects.values_list(
                "invoice_id", "payment_id", "credit_id", "amount_cents", "backfilled"
            )
        ),
        "credits": ordered(Credit.objects.values_list("tenant_id", "currency", "source_payment_id", "amount_cents", "reason", "backfilled")),
        "invoice_migrations": ordered(InvoiceMigration.objects.values_list(
            "invoice_id", "legacy_status", "legacy_amount_paid_cents", "legacy_paid_cents", "legacy_updated_at")),
        "payment_migrations": ordered(PaymentMigration.objects.values_list("payment_id", flat=True)),
        "deviations": ordered(
            (kind, tenant, invoice, payment_key(payment) if payment else None, json.dumps(legacy, sort_keys=True),
             json.dumps(new, sort_keys=True), detail)
            for kind, tenant, invoice, payment, legacy, new, detail in BackfillDeviation.objects.values_list(
                "kind", "tenant_id", "invoice_id", "payment_id", "legacy", "new", "detail")
        ),
        "audit": ordered(
            (event, invoice, payment_key(payment) if payment else None, amount, backfilled)
            for event, invoice, payment, amount, backfilled in PaymentAuditLog.objects.values_list(
                "event_type", "invoice_id", "payment_id", "amount_cents", "backfilled")
        ),
    }


def audit_state() -> list:
    """Every backfill audit row with its JSON, ids of backfill-created rows replaced by what they are."""
    synthetic = dict(Payment.objects.filter(channel="LEGACY").values_list("pk", "invoice_id"))
    allocations = {
        pk: (invoice, synthetic.get(payment, payment), amount)
        for pk, invoice, payment, amount in Allocation.objects.values_list("pk", "invoice_id", "payment_id", "amount_cents")
    }
    credits = dict(Credit.objects.values_list("pk", "source_payment_id"))
    renames = {
        "allocationId": allocations.get, "creditId": credits.get,
        "paymentId": lambda pk: ("synthetic", synthetic[pk]) if pk in synthetic else pk,
        "syntheticPaymentId": lambda pk: ("synthetic", synthetic[pk]) if pk in synthetic else pk,
        "runId": lambda pk: None,
    }

    def named(value):
        if isinstance(value, dict):
            return {key: renames[key](item) if key in renames and item is not None else named(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [named(item) for item in value]
        return value

    rows = PaymentAuditLog.objects.filter(backfilled=True).values_list(
        "tenant_id", "actor_label", "event_type", "invoice_id", "payment_id", "credit_id", "amount_cents",
        "before", "after", "extra",
    )
    return sorted(
        (
            json.dumps(
                [tenant, actor, event, invoice, renames["paymentId"](payment) if payment else None,
                 credits.get(credit), amount, named(before), named(after), named(extra)],
                default=str,
            )
            for tenant, actor, event, invoice, payment, credit, amount, before, after, extra in rows
        )
    )


def database_url() -> str:
    params = connection.settings_dict
    user = params["USER"] or "postgres"
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return f"postgres://{user}{password}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"



def other_connection():
    import psycopg

    params = connection.settings_dict
    return psycopg.connect(
        dbname=params["NAME"], user=params["USER"] or None, password=params["PASSWORD"] or None,
        host=params["HOST"] or None, port=params["PORT"] or None, autocommit=True,
    )
