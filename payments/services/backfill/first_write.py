"""Migrate on first write: a service about to write to an invoice or legacy payment the backfill has
not reached migrates it first, in its own transaction, by the same batch code (SPEC: a write to a
not-yet-migrated invoice migrates it first)."""
from collections.abc import Iterable

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q
from django.utils import timezone

from payments.models import InvoiceMigration, Payment, PaymentMigration
from payments.services import errors
from payments.services.backfill.batch import detached_payments_migrate, invoices_migrate
from payments.services.backfill.common import BACKFILL_NEEDS_TRANSACTION, BackfillError, BackfillModels


def _require_transaction(using: str) -> None:
    if not connections[using].in_atomic_block:
        raise RuntimeError(BACKFILL_NEEDS_TRANSACTION)


def invoice_migrate_if_needed(*, invoice_id: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Lock the invoice and, if the backfill has not reached it, migrate it (with its legacy
    payments of its tenant) now, by the batch rules. True if it migrated."""
    _require_transaction(using)
    result = invoices_migrate(
        BackfillModels(global_apps), using=using, invoice_ids=[invoice_id], run_id=None, today=timezone.localdate()
    )
    return bool(result.migrated_invoices)


def payment_migrate_if_needed(*, payment_id: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Lock the legacy payment and, if not mapped yet, migrate it now (first its invoice, when that
    is an unmigrated invoice of its own tenant). True if it migrated."""
    _require_transaction(using)
    result = detached_payments_migrate(
        BackfillModels(global_apps), using=using, payment_ids=[payment_id], run_id=None, today=timezone.localdate()
    )
    return payment_id in result.migrated_payment_ids


def rows_migrate_if_needed(*, invoice_ids: Iterable[int] = (), payment_ids: Iterable[int] = ()) -> None:
    """Put not-yet-migrated invoices and legacy payments on the allocation model before a service's
    write touches them; a refusal of the backfill is the service's `RuleViolation`."""
    invoice_ids = set(invoice_ids)
    payment_ids = set(payment_ids)
    unmigrated_invoices = sorted(
        invoice_ids - set(InvoiceMigration.objects.filter(invoice_id__in=invoice_ids).values_list("invoice_id", flat=True))
    )
    unmigrated_payments = sorted(
        Payment.objects.filter(pk__in=payment_ids)
        .filter(Q(channel__isnull=True) | Q(verification_status__isnull=True))
        .exclude(pk__in=PaymentMigration.objects.filter(payment_id__in=payment_ids).values("payment_id"))
        .values_list("pk", flat=True)
    )
    try:
        for invoice_id in unmigrated_invoices:
            invoice_migrate_if_needed(invoice_id=invoice_id)
        for payment_id in unmigrated_payments:
            payment_migrate_if_needed(payment_id=payment_id)
    except BackfillError as error:  # e.g. a client's key in the backfill's namespace: refused, nothing written
        raise errors.RuleViolation(str(error)) from None
