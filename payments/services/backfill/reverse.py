"""Reverse the backfill (the data migration's backwards step): remove exactly what it created and
give every invoice back its legacy status."""
from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q

from payments.domain import backfill as plan_rules
from payments.services.backfill.audit_payload import INVOICE_BACKFILLED, PAYMENT_BACKFILLED
from payments.services.backfill.common import REVERSE_REFUSED, BackfillError, BackfillModels
from payments.services.backfill.locks import backfill_lock
from payments.services.invoice_status import invoice_statuses_restore_legacy


def _synthetic_payments(m: BackfillModels, using: str):
    return m.Payment.objects.using(using).filter(
        channel=plan_rules.SYNTHETIC_CHANNEL, idempotency_key__startswith=plan_rules.SYNTHETIC_KEY_PREFIX
    )


def backfill_reverse(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Remove exactly what the backfill created and restore each invoice's legacy status.

    Refuses (`BackfillError(REVERSE_REFUSED)`), changing nothing, when money rows recorded since
    reference rows the backfill created. One transaction.
    """
    m = BackfillModels(apps)
    with backfill_lock(using=using), transaction.atomic(using=using):
        connection = connections[using]
        synthetic = _synthetic_payments(m, using)
        backfilled_credits = m.Credit.objects.using(using).filter(backfilled=True)
        backfilled_allocations = m.Allocation.objects.using(using).filter(backfilled=True)
        blockers = {
            "allocations of backfill payments or credits": m.Allocation.objects.using(using)
            .filter(backfilled=False)
            .filter(Q(payment_id__in=synthetic.values("pk")) | Q(credit_id__in=backfilled_credits.values("pk"))),
            "reversals of backfill allocations": m.AllocationReversal.objects.using(using).filter(
                allocation_id__in=backfilled_allocations.values("pk")
            ),
            "refunds of backfill payments or credits": m.Refund.objects.using(using).filter(
                Q(payment_id__in=synthetic.values("pk")) | Q(credit_id__in=backfilled_credits.values("pk"))
            ),
            "credits from backfill payments": m.Credit.objects.using(using)
            .filter(backfilled=False)
            .filter(source_payment_id__in=synthetic.values("pk")),
        }
        found = [f"{queryset.count()} {what}" for what, queryset in blockers.items() if queryset.exists()]
        if found:
            raise BackfillError(REVERSE_REFUSED.format(detail=", ".join(found)))
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # The append-only audit trigger lets rows go only with this set, in this transaction.
                cursor.execute("SET LOCAL pay10.audit_purge = 'on'")
        m.PaymentAuditLog.objects.using(using).filter(
            backfilled=True, event_type__in=[INVOICE_BACKFILLED, PAYMENT_BACKFILLED]
        ).delete()
        m.BackfillDeviation.objects.using(using).all().delete()
        backfilled_allocations.delete()
        backfilled_credits.delete()
        m.PaymentMigration.objects.using(using).filter(payment_id__in=synthetic.values("pk")).delete()
        synthetic.delete()
        invoice_statuses_restore_legacy(invoice_model=m.Invoice, migration_model=m.InvoiceMigration, using=using)
        m.Payment.objects.using(using).filter(
            pk__in=m.PaymentMigration.objects.using(using).values("payment_id")
        ).update(channel=None, verification_status=None)
        m.PaymentMigration.objects.using(using).all().delete()
        m.InvoiceMigration.objects.using(using).all().delete()
        m.BackfillRun.objects.using(using).all().delete()
