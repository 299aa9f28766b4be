"""Payments after PAY-10: record (idempotent), verify, reject, refund.

The legacy column `payments_payment.status` is kept mirrored for old readers: VERIFIED→SUCCEEDED,
PENDING→PENDING, REJECTED→FAILED, fully refunded→REFUNDED.
"""
import hashlib
import json
from datetime import UTC, datetime, time, timedelta

from django.conf import settings

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import Tenant
from payments.models import (
    Allocation,
    AuditEvent,
    Channel,
    Credit,
    LegacyPaymentStatus,
    Payment,
    Refund,
    VerificationStatus,
)
from payments.domain.backfill import SYNTHETIC_KEY_PREFIX
from payments.services import errors
from payments.services.audit import audited, credit_snapshot, payment_snapshot, user_or_none
from payments.services.backfill.first_write import rows_migrate_if_needed
from payments.selectors.balances import payment_refunded_total
from payments.services.inputs import amount_validate, reason_required, text_validate
from payments.services.invoice_status import invoice_statuses_refresh
from payments.services.ledger import allocation_apply, allocation_reverse_locked
from payments.services.locking import LockedRows, rows_lock
from payments.services.lookups import AllTenants, payment_get, tenant_id_of

RECORDABLE_CHANNELS = tuple(choice for choice in Channel.values if choice != Channel.LEGACY)
RECORDABLE_VERIFICATION_STATUSES = (VerificationStatus.PENDING, VerificationStatus.VERIFIED)
LEGACY_STATUS_OF = {
    VerificationStatus.PENDING: LegacyPaymentStatus.PENDING,
    VerificationStatus.VERIFIED: LegacyPaymentStatus.SUCCEEDED,
    VerificationStatus.REJECTED: LegacyPaymentStatus.FAILED,
}
REJECT_RELEASE_REASON = "payment {id} rejected: {reason}"
REFUND_REVERSE_REASON = "refund of payment {id}"


def _request_fingerprint(**request) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def payment_amount_validate(amount_cents) -> int:
    """A payment's amount: positive integer cents, at most `PAY10_MAX_PAYMENT_CENTS`."""
    amount_validate(amount_cents)
    return amount_validate(amount_cents, max_cents=settings.PAY10_MAX_PAYMENT_CENTS)


def received_at_validate(received_at: datetime) -> datetime:
    """Not later than now plus `PAY10_RECEIVED_AT_MAX_SKEW_SECONDS`, not before `PAY10_RECEIVED_AT_FLOOR` (UTC)."""
    latest = timezone.now() + timedelta(seconds=settings.PAY10_RECEIVED_AT_MAX_SKEW_SECONDS)
    if received_at > latest:
        raise errors.InvalidInput(errors.ERROR_RECEIVED_IN_FUTURE.format(seconds=settings.PAY10_RECEIVED_AT_MAX_SKEW_SECONDS))
    floor = datetime.combine(settings.PAY10_RECEIVED_AT_FLOOR, time.min, tzinfo=UTC)
    if received_at < floor:
        raise errors.InvalidInput(errors.ERROR_RECEIVED_BEFORE_FLOOR.format(floor=settings.PAY10_RECEIVED_AT_FLOOR.isoformat()))
    return received_at


def idempotency_key_validate(idempotency_key) -> str:
    """A client's key: text of at most 255 characters, outside the backfill's namespace."""
    text_validate(idempotency_key, field="idempotency key")
    if idempotency_key.startswith(SYNTHETIC_KEY_PREFIX):
        raise errors.InvalidInput(errors.ERROR_IDEMPOTENCY_KEY_RESERVED.format(prefix=SYNTHETIC_KEY_PREFIX))
    return idempotency_key


def _replay(*, payment: Payment, fingerprint: str, idempotency_key: str) -> tuple[Payment, bool]:
    if payment.request_fingerprint != fingerprint:
        raise errors.IdempotencyConflict(errors.ERROR_IDEMPOTENCY_CONFLICT.format(key=idempotency_key))
    return payment, False


def payment_record(
    *,
    tenant: Tenant,
    amount_cents: int,
    currency: str,
    channel: str,
    reference: str = "",
    received_at: datetime | None = None,
    verification_status: str = VerificationStatus.PENDING,
    idempotency_key: str | None = None,
    actor,
) -> tuple[Payment, bool]:
    """Record money received. Returns (payment, created): the same idempotency key with the same
    request returns the payment it created; with a different request it is a conflict."""
    payment_amount_validate(amount_cents)
    if received_at is not None:
        received_at_validate(received_at)
    if currency != tenant.currency:
        raise errors.InvalidInput(errors.ERROR_CURRENCY_MISMATCH_TENANT.format(currency=currency, expected=tenant.currency))
    if channel not in RECORDABLE_CHANNELS:
        raise errors.InvalidInput(errors.ERROR_CHANNEL_INVALID.format(choices=", ".join(RECORDABLE_CHANNELS)))
    if verification_status not in RECORDABLE_VERIFICATION_STATUSES:
        raise errors.InvalidInput(errors.ERROR_VERIFICATION_STATUS_INVALID)
    text_validate(reference, field="reference")
    if idempotency_key is not None:
        idempotency_key_validate(idempotency_key)
    fingerprint = _request_fingerprint(
        tenant=tenant.pk,
        amount_cents=amount_cents,
        currency=currency,
        channel=channel,
        reference=reference,
        received_at=received_at.isoformat() if received_at is not None else None,
        verification_status=str(verification_status),
    )
    with transaction.atomic():
        if idempotency_key is not None:
            existing = Payment.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
            if existing is not None:
                return _replay(payment=existing, fingerprint=fingerprint, idempotency_key=idempotency_key)
        try:
            with transaction.atomic(), audited(
                tenant_id=tenant.pk,
                actor=actor,
                event_type=AuditEvent.PAYMENT_RECORDED,
                amount_cents=amount_cents,
                extra={"channel": channel, "reference": reference, "idempotency_key": idempotency_key},
            ) as change:
                payment = Payment.objects.create(
                    tenant=tenant,
                    amount_cents=amount_cents,
                    currency=currency,
                    channel=channel,
                    method=channel.lower(),
                    reference=reference,
                    received_at=received_at or timezone.now(),
                    verification_status=verification_status,
                    status=LEGACY_STATUS_OF[verification_status],
                    idempotency_key=idempotency_key,
                    request_fingerprint=fingerprint if idempotency_key is not None else None,
                )
                change.payment_id = payment.pk  # recorded: no "before"
        except IntegrityError:
            # A concurrent request with the same key won the race; it has committed by now.
            existing = Payment.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
            if idempotency_key is None or existing is None:
                raise
            return _replay(payment=existing, fingerprint=fingerprint, idempotency_key=idempotency_key)
    return payment, True


def _active_allocations(payment_id: int):
    return Allocation.objects.filter(payment_id=payment_id, reversal__isnull=True)


def _payment_locked(
    *, payment_id: int, tenant: Tenant | AllTenants, with_credit_applications: bool = False
) -> tuple[Payment, LockedRows]:
    """Find the payment in the tenant, migrate it if needed, and lock the invoices its money (and,
    if asked, its credits' money) is applied to, then the payment, then its credits."""
    payment_id = payment_get(payment_id=payment_id, tenant_id=tenant_id_of(tenant)).pk
    rows_migrate_if_needed(payment_ids=[payment_id])

    def invoice_ids():
        ids = set(_active_allocations(payment_id).values_list("invoice_id", flat=True))
        if with_credit_applications:
            ids |= set(
                Allocation.objects.filter(credit__source_payment_id=payment_id, reversal__isnull=True).values_list(
                    "invoice_id", flat=True
                )
            )
        return ids

    locked = rows_lock(
        invoice_ids=invoice_ids,
        payment_ids=lambda: [payment_id],
        credit_ids=lambda: Credit.objects.filter(source_payment_id=payment_id).values_list("pk", flat=True),
    )
    return locked.payments[payment_id], locked


def _verdict_audited(payment: Payment, actor, event_type: str, **fields):
    """`audited(...)` for a verification verdict on a payment: the whole payment's amount, its tenant."""
    return audited(
        tenant_id=payment.tenant_id,
        actor=actor,
        event_type=event_type,
        payment_id=payment.pk,
        amount_cents=payment.amount_cents,
        **fields,
    )


def payment_verify(*, payment_id: int, actor, tenant: Tenant | AllTenants) -> Payment:
    """PENDING → VERIFIED: its allocations start counting as paid."""
    with transaction.atomic():
        payment, locked = _payment_locked(payment_id=payment_id, tenant=tenant)
        if payment.verification_status == VerificationStatus.VERIFIED:
            return payment
        if payment.verification_status == VerificationStatus.REJECTED:
            raise errors.RuleViolation(errors.ERROR_VERIFY_REJECTED.format(id=payment.pk))
        with _verdict_audited(
            payment, actor, AuditEvent.PAYMENT_VERIFIED, extra={"invoice_ids": sorted(locked.invoices)}
        ):
            payment.verification_status = VerificationStatus.VERIFIED
            payment.status = LegacyPaymentStatus.SUCCEEDED
            payment.save(update_fields=["verification_status", "status"])
            invoice_statuses_refresh(invoice_ids=locked.invoices)
        return payment


def payment_reject(*, payment_id: int, actor, reason: str, tenant: Tenant | AllTenants) -> Payment:
    """PENDING or VERIFIED → REJECTED, releasing every allocation of the payment.

    Refused once money from it was refunded or became credit that has since been applied; a credit
    of it that was never applied holds no money any more (`credits_with_balances`).
    """
    reason = reason_required(reason)
    with transaction.atomic():
        payment, locked = _payment_locked(payment_id=payment_id, tenant=tenant)
        if payment.verification_status == VerificationStatus.REJECTED:
            return payment
        if Refund.objects.filter(payment=payment).exists():
            raise errors.RuleViolation(errors.ERROR_REJECT_REFUNDED.format(id=payment.pk))
        applied_credit = (
            Allocation.objects.filter(credit__in=list(locked.credits), reversal__isnull=True)
            .values_list("credit_id", flat=True)
            .first()
        )
        if applied_credit is not None:
            raise errors.RuleViolation(errors.ERROR_REJECT_CREDIT_APPLIED.format(id=payment.pk, credit=applied_credit))
        with _verdict_audited(payment, actor, AuditEvent.PAYMENT_REJECTED) as change:
            released = []
            for allocation in _active_allocations(payment.pk).order_by("pk"):
                allocation_reverse_locked(
                    allocation=allocation, actor=actor,
                    reason=REJECT_RELEASE_REASON.format(id=payment.pk, reason=reason)[:255],
                )
                released.append(allocation.pk)
            payment.verification_status = VerificationStatus.REJECTED
            payment.status = LegacyPaymentStatus.FAILED
            payment.save(update_fields=["verification_status", "status"])
            change.extra = {
                "reason": reason, "released_allocation_ids": released, "cancelled_credit_ids": sorted(locked.credits),
            }
        return payment


def _refund_write(*, payment: Payment, credit: Credit | None, amount_cents: int, reason: str, actor) -> Refund:
    with audited(
        tenant_id=payment.tenant_id,
        actor=actor,
        event_type=AuditEvent.PAYMENT_REFUNDED,
        payment_id=payment.pk,
        credit_id=credit.pk if credit is not None else None,
        amount_cents=amount_cents,
    ) as change:
        refund = Refund.objects.create(
            tenant_id=payment.tenant_id,
            payment=payment,
            credit=credit,
            amount_cents=amount_cents,
            reason=reason,
            created_by=user_or_none(actor),
        )
        change.extra = {"refund_id": refund.pk, "reason": reason}
    return refund


def payment_refund(
    *, payment_id: int, amount_cents: int, actor, reason: str = "", tenant: Tenant | AllTenants
) -> list[Refund]:
    """Pay money of a verified payment back: first its unallocated money, then what its credits
    hold, then by reversing its newest allocations (a partly needed allocation is reversed and
    its rest allocated again), so no cent leaves the ledger unaccounted."""
    amount_validate(amount_cents)
    reason = text_validate(reason, field="reason").strip()
    with transaction.atomic():
        payment, locked = _payment_locked(payment_id=payment_id, tenant=tenant, with_credit_applications=True)
        if payment.verification_status != VerificationStatus.VERIFIED:
            raise errors.RuleViolation(
                errors.ERROR_PAYMENT_NOT_VERIFIED.format(id=payment.pk, status=payment.verification_status)
            )
        refundable = payment.amount_cents - payment_refunded_total(payment_id=payment.pk)
        if amount_cents > refundable:
            raise errors.RuleViolation(
                errors.ERROR_REFUND_EXCEEDS.format(id=payment.pk, refundable=refundable, amount=amount_cents)
            )
        refunds = []
        remaining = amount_cents

        def refund_from(credit: Credit | None, available: int) -> None:
            nonlocal remaining
            take = min(available, remaining)
            if take > 0:
                refunds.append(_refund_write(payment=payment, credit=credit, amount_cents=take, reason=reason, actor=actor))
                remaining -= take

        refund_from(None, payment_snapshot(payment.pk)["unallocated_cents"])
        for credit_id in sorted(locked.credits):
            refund_from(locked.credits[credit_id], credit_snapshot(credit_id)["remaining_cents"])
        newest_first = Allocation.objects.filter(
            Q(payment_id=payment.pk) | Q(credit_id__in=list(locked.credits)), reversal__isnull=True
        ).order_by("-created_at", "-id")
        for allocation in list(newest_first):
            if remaining == 0:
                break
            credit = locked.credits.get(allocation.credit_id)
            allocation_reverse_locked(
                allocation=allocation, actor=actor, reason=REFUND_REVERSE_REASON.format(id=payment.pk)
            )
            take = min(allocation.amount_cents, remaining)
            refund_from(credit, take)
            if allocation.amount_cents > take:
                allocation_apply(
                    invoice=locked.invoices[allocation.invoice_id],
                    payment=payment if credit is None else None,
                    credit=credit,
                    amount_cents=allocation.amount_cents - take,
                    actor=actor,
                    extra={"rest_of_allocation_id": allocation.pk},
                )
        if payment_refunded_total(payment_id=payment.pk) == payment.amount_cents:
            payment.status = LegacyPaymentStatus.REFUNDED
            payment.save(update_fields=["status"])
        return refunds
