"""Backfill planning: what the PAY-10 backfill writes for legacy invoices and payments.

Pure code (SPEC.md "Backfill rules"): legacy rows come in as dataclasses, a plan comes out; the
writer (`payments.services.backfill`) turns plans into rows in set-based batches. Every rule of
the backfill is decided here, once:

- legacy paid figure (`payments.domain.status.legacy_paid_cents`);
- status and channel mapping (`payments.domain.channels`);
- the invoice's succeeded same-tenant, same-currency payments, oldest `received_at` first (then id),
  are allocated up to the legacy paid figure; a shortfall is covered by one synthetic LEGACY
  payment allocated for exactly the gap;
- every unallocated cent of a succeeded payment becomes a credit of the payment's own tenant, with
  a reason naming the case; a cross-tenant link is never allocated across; a payment whose currency
  differs from its tenant's is neither allocated nor credited (reported for a person to resolve);
- the new status is the engine's verdict on the allocated money;
- every departure from the legacy data is a deviation.
"""
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from payments.domain import status as engine
from payments.domain.channels import LEGACY, channel_for_method, verification_status_for

SUCCEEDED = "SUCCEEDED"
SYNTHETIC_METHOD = "legacy"
SYNTHETIC_CHANNEL = LEGACY
SYNTHETIC_KEY_PREFIX = "pay10-backfill:"


def synthetic_idempotency_key(invoice_id: int) -> str:
    return f"{SYNTHETIC_KEY_PREFIX}{invoice_id}"


class Deviation:
    """Kinds of `payments.models.BackfillDeviation` (the planner does not import models)."""

    STATUS_CHANGED = "STATUS_CHANGED"
    SHORTFALL_COVERED = "SHORTFALL_COVERED"
    OVERPAYMENT_TO_CREDIT = "OVERPAYMENT_TO_CREDIT"
    UNLINKED_PAYMENT_TO_CREDIT = "UNLINKED_PAYMENT_TO_CREDIT"
    UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT = "UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT"
    CROSS_TENANT_LINK = "CROSS_TENANT_LINK"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INCONSISTENT_LEGACY_FIGURES = "INCONSISTENT_LEGACY_FIGURES"


# Every kind, in the order above: `payments.models.BackfillDeviation.Kind` is built from it.
DEVIATION_KINDS = tuple(value for name, value in vars(Deviation).items() if name.isupper())


# Credit reasons, one per case (SPEC: "a reason that says which case it was").
REASON_OVERPAYMENT = "PAY-10 backfill: overpayment of invoice {number}"
REASON_DRAFT_INVOICE = "PAY-10 backfill: payment on DRAFT invoice {number}"
REASON_VOID_INVOICE = "PAY-10 backfill: payment on VOID invoice {number}"
REASON_UNPAID_INVOICE = "PAY-10 backfill: payment on unpaid invoice {number}"
REASON_UNLINKED = "PAY-10 backfill: unlinked payment"
REASON_CROSS_TENANT = "PAY-10 backfill: cross-tenant link to invoice {invoice_id} of tenant {invoice_tenant}"
REASON_MIGRATED_INVOICE = "PAY-10 backfill: payment on invoice {invoice_id} migrated before it"

# Deviation details (templates: the SQL planner renders the same texts from them).
PROBLEM_OVER_AMOUNT = "amount_paid_cents {paid} exceeds amount_cents {amount}"
PROBLEM_PAID = "PAID with amount_paid_cents {paid} of {amount}"
PROBLEM_PARTIALLY_PAID = "PARTIALLY_PAID with amount_paid_cents {paid} of {amount}"
PROBLEM_ISSUED = "ISSUED with amount_paid_cents {paid}"
PROBLEM_EXPLICIT = "{status} with amount_paid_cents {paid} (counted as 0)"
PROBLEMS_SEPARATOR = "; "
DETAIL_CURRENCY_MISMATCH = "payment in {currency} for a {expected} tenant: left unallocated for a person to resolve"
DETAIL_SHORTFALL = "legacy paid figure {paid} exceeds the linked succeeded payments' allocation"
DETAIL_STATUS_CHANGED = "{old} -> {new} by the status engine"
DETAIL_CROSS_TENANT = "payment linked to another tenant's invoice: never allocated across tenants"


@dataclass(frozen=True, slots=True)
class LegacyInvoice:
    id: int
    tenant_id: str
    number: str
    currency: str
    status: str
    amount_cents: int
    amount_paid_cents: int
    due_date: date | None
    issued_at: datetime | None
    paid_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LegacyPayment:
    id: int
    tenant_id: str
    tenant_currency: str
    invoice_id: int | None
    invoice_tenant_id: str | None
    amount_cents: int
    currency: str
    method: str
    status: str
    received_at: datetime
    invoice_number: str = ""


@dataclass(frozen=True, slots=True)
class SyntheticPayment:
    """The LEGACY payment that covers a shortfall: legacy money the old data never recorded."""

    invoice_id: int
    tenant_id: str
    currency: str
    amount_cents: int
    received_at: datetime

    @property
    def idempotency_key(self) -> str:
        return synthetic_idempotency_key(self.invoice_id)


@dataclass(frozen=True, slots=True)
class PlannedAllocation:
    invoice_id: int
    tenant_id: str
    amount_cents: int
    payment_id: int | None  # None: the invoice's synthetic payment


@dataclass(frozen=True, slots=True)
class PlannedCredit:
    tenant_id: str
    currency: str
    source_payment_id: int
    amount_cents: int
    reason: str


@dataclass(frozen=True, slots=True)
class PlannedDeviation:
    kind: str
    tenant_id: str
    invoice_id: int | None
    invoice_number: str
    payment_id: int | None  # None with `synthetic` set: the invoice's synthetic payment
    legacy: dict
    new: dict
    detail: str
    synthetic: bool = False


def _invoice_deviation(kind: str, invoice: LegacyInvoice, *, legacy: dict, new: dict, detail: str,
                       synthetic: bool = False) -> PlannedDeviation:
    """A deviation of an invoice as a whole (no payment of its own; `synthetic` for its synthetic one)."""
    return PlannedDeviation(
        kind=kind,
        tenant_id=invoice.tenant_id,
        invoice_id=invoice.id,
        invoice_number=invoice.number,
        payment_id=None,
        legacy=legacy,
        new=new,
        detail=detail,
        synthetic=synthetic,
    )


def _payment_deviation(kind: str, payment: LegacyPayment, invoice: LegacyInvoice | None, *, legacy: dict,
                       new: dict, detail: str) -> PlannedDeviation:
    """A deviation of one payment, named by the invoice it is planned against or else by its legacy link."""
    return PlannedDeviation(
        kind=kind,
        tenant_id=payment.tenant_id,
        invoice_id=invoice.id if invoice else payment.invoice_id,
        invoice_number=invoice.number if invoice else payment.invoice_number,
        payment_id=payment.id,
        legacy=legacy,
        new=new,
        detail=detail,
    )


@dataclass(slots=True)
class PaymentPlan:
    payment: LegacyPayment
    channel: str
    verification_status: str
    credit: PlannedCredit | None = None
    deviations: list[PlannedDeviation] = field(default_factory=list)


@dataclass(slots=True)
class InvoicePlan:
    invoice: LegacyInvoice
    legacy_paid_cents: int
    new_status: str
    synthetic: SyntheticPayment | None
    allocations: list[PlannedAllocation]
    payments: list[PaymentPlan]
    deviations: list[PlannedDeviation] = field(default_factory=list)


def legacy_inconsistencies(invoice: LegacyInvoice) -> list[str]:
    """Where `amount_paid_cents` disagrees with the status it sits beside."""
    paid, amount, status = invoice.amount_paid_cents, invoice.amount_cents, invoice.status
    problems = []
    if paid > amount:
        problems.append(PROBLEM_OVER_AMOUNT.format(paid=paid, amount=amount))
    if status == engine.PAID and paid != amount:
        problems.append(PROBLEM_PAID.format(paid=paid, amount=amount))
    elif status == engine.PARTIALLY_PAID and not 0 < paid < amount:
        problems.append(PROBLEM_PARTIALLY_PAID.format(paid=paid, amount=amount))
    elif status == engine.ISSUED and paid > 0:
        problems.append(PROBLEM_ISSUED.format(paid=paid))
    elif status in engine.EXPLICIT_STATUSES and paid > 0:
        problems.append(PROBLEM_EXPLICIT.format(status=status, paid=paid))
    return problems


def _mapped(payment: LegacyPayment) -> PaymentPlan:
    return PaymentPlan(
        payment=payment,
        channel=channel_for_method(payment.method),
        verification_status=verification_status_for(payment.status),
    )


def _currency_mismatch(payment: LegacyPayment, invoice: LegacyInvoice | None) -> PlannedDeviation:
    expected = payment.tenant_currency
    return _payment_deviation(
        Deviation.CURRENCY_MISMATCH,
        payment,
        invoice,
        legacy={"paymentCurrency": payment.currency, "amountCents": payment.amount_cents, "status": payment.status},
        new={"tenantCurrency": expected, "allocatedCents": 0, "creditCents": 0},
        detail=DETAIL_CURRENCY_MISMATCH.format(currency=payment.currency, expected=expected),
    )


def _has_currency_mismatch(payment: LegacyPayment, invoice: LegacyInvoice | None) -> bool:
    if payment.currency != payment.tenant_currency:
        return True
    return invoice is not None and invoice.currency != payment.currency


def _credit(plan: PaymentPlan, *, amount_cents: int, reason: str, kind: str, invoice: LegacyInvoice | None,
            allocated_cents: int) -> None:
    payment = plan.payment
    plan.credit = PlannedCredit(
        tenant_id=payment.tenant_id,
        currency=payment.currency,
        source_payment_id=payment.id,
        amount_cents=amount_cents,
        reason=reason,
    )
    plan.deviations.append(
        _payment_deviation(
            kind,
            payment,
            invoice,
            legacy={"paymentCents": payment.amount_cents, "invoiceStatus": invoice.status if invoice else None},
            new={"allocatedCents": allocated_cents, "creditCents": amount_cents},
            detail=reason,
        )
    )


def _leftover_case(invoice: LegacyInvoice, legacy_paid: int) -> tuple[str, str]:
    if invoice.status == engine.DRAFT:
        return REASON_DRAFT_INVOICE, Deviation.UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT
    if invoice.status == engine.VOID:
        return REASON_VOID_INVOICE, Deviation.UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT
    if legacy_paid == 0 and invoice.status != engine.PAID:
        return REASON_UNPAID_INVOICE, Deviation.UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT
    return REASON_OVERPAYMENT, Deviation.OVERPAYMENT_TO_CREDIT


def plan_invoice(*, invoice: LegacyInvoice, payments: Sequence[LegacyPayment], today: date) -> InvoicePlan:
    """The backfill of one invoice and of its not yet migrated legacy payments of the same tenant."""
    if any(p.invoice_id != invoice.id or p.tenant_id != invoice.tenant_id for p in payments):
        raise ValueError(f"plan_invoice({invoice.id}) got a payment not linked to it in its tenant")
    legacy_paid = engine.legacy_paid_cents(
        status=invoice.status, amount_cents=invoice.amount_cents, amount_paid_cents=invoice.amount_paid_cents
    )
    payment_plans = [_mapped(p) for p in sorted(payments, key=lambda p: p.id)]
    allocations: list[PlannedAllocation] = []
    deviations: list[PlannedDeviation] = []
    remaining = legacy_paid
    succeeded = 0
    leftover_reason, leftover_kind = _leftover_case(invoice, legacy_paid)
    for plan in sorted(payment_plans, key=lambda plan: (plan.payment.received_at, plan.payment.id)):
        payment = plan.payment
        if _has_currency_mismatch(payment, invoice):
            plan.deviations.append(_currency_mismatch(payment, invoice))
            continue
        if payment.status != SUCCEEDED:
            continue
        succeeded += payment.amount_cents
        applied = min(remaining, payment.amount_cents)
        if applied > 0:
            allocations.append(PlannedAllocation(invoice.id, invoice.tenant_id, applied, payment.id))
            remaining -= applied
        if payment.amount_cents > applied:
            _credit(
                plan,
                amount_cents=payment.amount_cents - applied,
                reason=leftover_reason.format(number=invoice.number),
                kind=leftover_kind,
                invoice=invoice,
                allocated_cents=applied,
            )

    synthetic = None
    if remaining > 0:
        synthetic = SyntheticPayment(
            invoice_id=invoice.id,
            tenant_id=invoice.tenant_id,
            currency=invoice.currency,
            amount_cents=remaining,
            received_at=invoice.paid_at or invoice.issued_at or invoice.created_at,
        )
        allocations.append(PlannedAllocation(invoice.id, invoice.tenant_id, remaining, None))
        deviations.append(
            _invoice_deviation(
                Deviation.SHORTFALL_COVERED,
                invoice,
                synthetic=True,
                legacy={"paidCents": legacy_paid, "succeededPaymentsCents": succeeded},
                new={"syntheticPaymentCents": remaining},
                detail=DETAIL_SHORTFALL.format(paid=legacy_paid),
            )
        )

    new_status = engine.invoice_status(
        current_status=invoice.status,
        amount_cents=invoice.amount_cents,
        paid_cents=legacy_paid,
        due_date=invoice.due_date,
        today=today,
    )
    problems = legacy_inconsistencies(invoice)
    if problems:
        deviations.append(
            _invoice_deviation(
                Deviation.INCONSISTENT_LEGACY_FIGURES,
                invoice,
                legacy={"status": invoice.status, "amountCents": invoice.amount_cents,
                        "amountPaidCents": invoice.amount_paid_cents},
                new={"paidCents": legacy_paid},
                detail=PROBLEMS_SEPARATOR.join(problems),
            )
        )
    if new_status != invoice.status:
        deviations.append(
            _invoice_deviation(
                Deviation.STATUS_CHANGED,
                invoice,
                legacy={"status": invoice.status},
                new={"status": new_status, "paidCents": legacy_paid},
                detail=DETAIL_STATUS_CHANGED.format(old=invoice.status, new=new_status),
            )
        )
    return InvoicePlan(
        invoice=invoice,
        legacy_paid_cents=legacy_paid,
        new_status=new_status,
        synthetic=synthetic,
        allocations=allocations,
        payments=payment_plans,
        deviations=deviations,
    )


def plan_detached_payment(*, payment: LegacyPayment, invoice_migrated: bool = False) -> PaymentPlan:
    """A legacy payment no invoice backfill takes: unlinked, linked across tenants, or linked to an
    invoice migrated before it (its invoice's legacy figure is already allocated)."""
    plan = _mapped(payment)
    cross_tenant = payment.invoice_id is not None and payment.invoice_tenant_id != payment.tenant_id
    mismatch = payment.currency != payment.tenant_currency
    credited = 0 if mismatch or payment.status != SUCCEEDED else payment.amount_cents
    if cross_tenant:
        reason = REASON_CROSS_TENANT.format(invoice_id=payment.invoice_id, invoice_tenant=payment.invoice_tenant_id)
        plan.deviations.append(
            _payment_deviation(
                Deviation.CROSS_TENANT_LINK,
                payment,
                None,
                legacy={"invoiceId": payment.invoice_id, "invoiceTenant": payment.invoice_tenant_id,
                        "paymentTenant": payment.tenant_id, "status": payment.status},
                new={"allocatedCents": 0, "creditCents": credited},
                detail=DETAIL_CROSS_TENANT,
            )
        )
        if credited:
            plan.credit = PlannedCredit(payment.tenant_id, payment.currency, payment.id, credited, reason)
    if mismatch:
        plan.deviations.append(_currency_mismatch(payment, None))
    if cross_tenant or not credited:
        return plan
    if payment.invoice_id is None:
        reason, kind = REASON_UNLINKED, Deviation.UNLINKED_PAYMENT_TO_CREDIT
    elif invoice_migrated:
        reason, kind = REASON_MIGRATED_INVOICE.format(invoice_id=payment.invoice_id), Deviation.OVERPAYMENT_TO_CREDIT
    else:
        raise ValueError(f"payment {payment.id} belongs to its invoice's backfill, not a detached one")
    _credit(plan, amount_cents=credited, reason=reason, kind=kind, invoice=None, allocated_cents=0)
    return plan
