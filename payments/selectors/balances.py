"""Balance helpers: paid, pending and balance of invoices; allocated, credited and unallocated of
payments; remaining of credits; a tenant's credit balance.

Every figure is defined once, as a SQL expression, so a list costs one query however long it is,
and the helpers for one object are the same querysets filtered to it. The arithmetic names come
from `payments.domain.money`.

Two shapes of the same invoice figures:
- `invoices_with_balances`: correlated subqueries, probed per invoice; the shape for one invoice and
  for the rows a writer locks with `select_for_update`;
- `invoices_with_balances_grouped`: one join of the allocations and one GROUP BY per invoice, so a
  read over a whole tenant reads each table once (hash joins) instead of probing it per invoice, and
  a read of a few ids (a FIN-02 page) is nested index probes with far less SQL to compile. It is an
  aggregate query, so it cannot be locked. The paid and pending conditions are the same `Q` objects,
  reached through the `allocations` relation, and tests hold both shapes equal.

An invoice the backfill has not reached yet (no `InvoiceMigration` row) reports its legacy paid
figure, so readers see the same money before, during and after the online backfill.
"""
from datetime import date

from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import ExpressionWrapper
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from billing.models import Invoice, Tenant
from payments.domain import status as engine
from payments.domain.money import CreditBalance, InvoiceBalance, PaymentBalance
from payments.models import Allocation, Credit, InvoiceMigration, LegacyPaymentStatus, Payment, Refund, VerificationStatus
from payments.selectors.schema import pay10_schema_installed
from payments.selectors.status import invoice_status_expression

ZERO = Value(0, output_field=BigIntegerField())

ACTIVE_ALLOCATION = Q(reversal__isnull=True)
# Money that counts as paid: verified payments and applied credit.
PAID_ALLOCATION = ACTIVE_ALLOCATION & (
    Q(payment__verification_status=VerificationStatus.VERIFIED) | Q(credit__isnull=False)
)
PENDING_ALLOCATION = ACTIVE_ALLOCATION & Q(payment__verification_status=VerificationStatus.PENDING)
# A refund of a payment's unallocated money (a refund out of one of its credits has its credit set).
REFUND_OF_UNALLOCATED = Q(credit__isnull=True)
# A payment awaiting verification (FIN-01's pending figure): PENDING, or a legacy row the backfill has
# not mapped yet that was PENDING. SQL twin: `rules.PENDING_VERIFICATION`.
PENDING_VERIFICATION = Q(verification_status=VerificationStatus.PENDING) | Q(
    verification_status__isnull=True, status=LegacyPaymentStatus.PENDING
)


def scoped(queryset: QuerySet, tenant: Tenant | None, lookup: str = "tenant") -> QuerySet:
    """The rows of one tenant, or every row without one."""
    return queryset if tenant is None else queryset.filter(**{lookup: tenant})


def sum_of(queryset: QuerySet, group_by: str) -> Coalesce:
    """A correlated `SUM(amount_cents)` subquery, 0 when there is nothing to add."""
    summed = queryset.order_by().values(group_by).annotate(total=Sum("amount_cents")).values("total")
    return Coalesce(Subquery(summed, output_field=BigIntegerField()), ZERO)


def legacy_paid_expression() -> Case:
    """SQL twin of `payments.domain.status.legacy_paid_cents` over an invoice row."""
    return Case(
        When(status=engine.PAID, then=F("amount_cents")),
        When(
            status__in=[engine.ISSUED, engine.PARTIALLY_PAID, engine.OVERDUE],
            then=Least(Greatest(F("amount_paid_cents"), ZERO), F("amount_cents")),
        ),
        default=ZERO,
        output_field=BigIntegerField(),
    )


def invoice_migrated_expression() -> Exists:
    return Exists(InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))


def invoices_with_balances(*, tenant: Tenant | None = None, today: date | None = None) -> QuerySet[Invoice]:
    """Invoices annotated with `is_migrated`, `paid_cents`, `pending_cents`, `balance_cents`,
    `outstanding_cents` and `status_today` (the engine's verdict for today), in one query."""
    today = today or timezone.localdate()
    queryset = scoped(Invoice.objects.all(), tenant)
    if pay10_schema_installed():
        allocations = Allocation.objects.filter(invoice_id=OuterRef("pk"))
        queryset = queryset.annotate(
            is_migrated=invoice_migrated_expression(),
        ).annotate(
            paid_cents=Case(
                When(is_migrated=False, then=legacy_paid_expression()),
                default=sum_of(allocations.filter(PAID_ALLOCATION), "invoice_id"),
                output_field=BigIntegerField(),
            ),
            pending_cents=Case(
                When(is_migrated=False, then=ZERO),
                default=sum_of(allocations.filter(PENDING_ALLOCATION), "invoice_id"),
                output_field=BigIntegerField(),
            ),
        )
    else:  # legacy state: nothing is migrated and no allocation exists yet
        queryset = queryset.annotate(
            is_migrated=Value(False),
            paid_cents=legacy_paid_expression(),
            pending_cents=ZERO,
        )
    return queryset.annotate(
        balance_cents=F("amount_cents") - F("paid_cents") - F("pending_cents"),
        outstanding_cents=F("amount_cents") - F("paid_cents"),
        status_today=invoice_status_expression(paid=F("paid_cents"), today=today),
    )


def _through(condition: Q, relation: str) -> Q:
    """`condition` on a related model's rows, rewritten to be evaluated from a model that reaches them by `relation`."""
    children = [
        _through(child, relation) if isinstance(child, Q) else (f"{relation}__{child[0]}", child[1])
        for child in condition.children
    ]
    return Q.create(children, connector=condition.connector, negated=condition.negated)


def _grouped_sum_of(condition: Q) -> Coalesce:
    """`SUM(amount_cents)` of the invoice's allocations that meet `condition`, 0 when there is none."""
    return Coalesce(
        Sum("allocations__amount_cents", filter=_through(condition, "allocations"), output_field=BigIntegerField()),
        ZERO,
    )


def invoices_with_balances_grouped(*, tenant: Tenant | None = None, today: date | None = None) -> QuerySet[Invoice]:
    """`invoices_with_balances` computed set-based: the same annotations and the same values, from
    one LEFT JOIN of allocations (their payment and reversal) and of `InvoiceMigration`, grouped by
    invoice. Use it for reads over many invoices; it cannot be locked or joined to another
    multi-valued relation (the sums would repeat)."""
    if not pay10_schema_installed():
        return invoices_with_balances(tenant=tenant, today=today)
    today = today or timezone.localdate()
    queryset = scoped(Invoice.objects.all(), tenant)
    queryset = queryset.annotate(
        # One-to-one: the LEFT JOIN adds no row, so the sums below stay per invoice.
        is_migrated=ExpressionWrapper(Q(pay10_migration__isnull=False), output_field=BooleanField()),
    ).annotate(
        paid_cents=Case(
            When(is_migrated=False, then=legacy_paid_expression()),
            default=_grouped_sum_of(PAID_ALLOCATION),
            output_field=BigIntegerField(),
        ),
        pending_cents=Case(
            When(is_migrated=False, then=ZERO),
            default=_grouped_sum_of(PENDING_ALLOCATION),
            output_field=BigIntegerField(),
        ),
    )
    return queryset.annotate(
        balance_cents=F("amount_cents") - F("paid_cents") - F("pending_cents"),
        outstanding_cents=F("amount_cents") - F("paid_cents"),
        status_today=invoice_status_expression(paid=F("paid_cents"), today=today),
    )


def invoice_balance(*, invoice: Invoice) -> InvoiceBalance:
    row = invoices_with_balances().values("amount_cents", "paid_cents", "pending_cents").get(pk=invoice.pk)
    return InvoiceBalance(**row)


def payments_with_balances(*, tenant: Tenant | None = None) -> QuerySet[Payment]:
    """Payments annotated with `allocated_cents`, `credited_cents`, `refunded_cents`, `unallocated_cents`
    and `refunded_total_cents` (`payments.domain.money.PaymentBalance` names the two refund sums:
    `refunded_cents`, refunds of unallocated money, is a term of `unallocated_cents`;
    `refunded_total_cents` also counts refunds out of the payment's credits)."""
    queryset = scoped(Payment.objects.all(), tenant)
    return queryset.annotate(
        allocated_cents=sum_of(Allocation.objects.filter(ACTIVE_ALLOCATION, payment_id=OuterRef("pk")), "payment_id"),
        credited_cents=sum_of(Credit.objects.filter(source_payment_id=OuterRef("pk")), "source_payment_id"),
        refunded_cents=sum_of(Refund.objects.filter(REFUND_OF_UNALLOCATED, payment_id=OuterRef("pk")), "payment_id"),
        refunded_total_cents=sum_of(Refund.objects.filter(payment_id=OuterRef("pk")), "payment_id"),
    ).annotate(
        unallocated_cents=F("amount_cents") - F("allocated_cents") - F("credited_cents") - F("refunded_cents"),
    )


def payment_refunded_total(*, payment_id: int) -> int:
    """Everything refunded of one payment (its `refunded_total_cents`); the legacy REFUNDED status
    holds when it equals the payment's amount."""
    return Refund.objects.filter(payment_id=payment_id).aggregate(total=Sum("amount_cents"))["total"] or 0


def payment_balance(*, payment: Payment) -> PaymentBalance:
    row = (
        payments_with_balances()
        .values("amount_cents", "allocated_cents", "credited_cents", "refunded_cents")
        .get(pk=payment.pk)
    )
    return PaymentBalance(**row)


def credits_with_balances(*, tenant: Tenant | None = None) -> QuerySet[Credit]:
    """Credits annotated with `applied_cents`, `refunded_cents`, `remaining_cents` (0 once its source payment is rejected)."""
    queryset = scoped(Credit.objects.all(), tenant)
    return queryset.annotate(
        applied_cents=sum_of(Allocation.objects.filter(ACTIVE_ALLOCATION, credit_id=OuterRef("pk")), "credit_id"),
        refunded_cents=sum_of(Refund.objects.filter(credit_id=OuterRef("pk")), "credit_id"),
    ).annotate(
        # A credit issued from a payment that was later rejected holds no money (the payment never arrived).
        remaining_cents=Case(
            When(source_payment__verification_status=VerificationStatus.REJECTED, then=ZERO),
            default=F("amount_cents") - F("applied_cents") - F("refunded_cents"),
            output_field=BigIntegerField(),
        )
    )


def credit_balance(*, credit: Credit) -> CreditBalance:
    row = credits_with_balances().values("amount_cents", "applied_cents", "refunded_cents").get(pk=credit.pk)
    return CreditBalance(**row)


def unapplied_credit_by_currency(*, tenant: Tenant | None = None) -> dict[str, int]:
    """What credits hold now, per currency: the sum of `credits_with_balances`' `remaining_cents`,
    computed set-based (three aggregates over credits, their active applications and their refunds,
    instead of two subqueries per credit). A credit whose source payment was rejected holds nothing,
    so none of its three terms counts."""
    return {currency: total for (_tenant, currency), total in _unapplied_credit(tenant=tenant, by_tenant=False).items()}


def unapplied_credit_by_tenant(*, tenant: Tenant | None = None) -> dict[tuple[str, str], int]:
    """`unapplied_credit_by_currency` per (tenant id, currency)."""
    return _unapplied_credit(tenant=tenant, by_tenant=True)


def _unapplied_credit(*, tenant: Tenant | None, by_tenant: bool) -> dict[tuple[str | None, str], int]:
    def live(source_payment: str) -> Q:
        # An anti-join on the few rejected payments (index `payments_payment_rejected`), not a join of
        # every credit to its payment: at a million invoices the join read the whole payments table.
        rejected = Payment.objects.filter(pk=OuterRef(source_payment), verification_status=VerificationStatus.REJECTED)
        return ~Q(Exists(rejected))

    credits = Credit.objects.filter(live("source_payment_id"))
    applications = Allocation.objects.filter(ACTIVE_ALLOCATION, credit__isnull=False).filter(live("credit__source_payment_id"))
    refunds = Refund.objects.filter(credit__isnull=False).filter(live("credit__source_payment_id"))
    if tenant is not None:
        credits = credits.filter(tenant=tenant)
        applications, refunds = applications.filter(credit__tenant=tenant), refunds.filter(credit__tenant=tenant)
    totals: dict[tuple[str | None, str], int] = {}
    terms = ((credits, 1, ""), (applications, -1, "credit__"), (refunds, -1, "credit__"))
    for rows, sign, credit in terms:
        fields = [f"{credit}tenant_id", f"{credit}currency"] if by_tenant else [f"{credit}currency"]
        for row in rows.order_by().values(*fields).annotate(total=Sum("amount_cents")):
            key = (row[fields[0]] if by_tenant else None, row[fields[-1]])
            totals[key] = totals.get(key, 0) + sign * row["total"]
    return totals


def tenant_credit_balance(*, tenant: Tenant) -> dict[str, int]:
    """Unapplied credit the tenant holds, per currency (one currency per tenant, but never mixed)."""
    rows = (
        credits_with_balances(tenant=tenant)
        .values("currency")
        .annotate(remaining=Sum("remaining_cents"))
        .order_by("currency")
    )
    return {row["currency"]: row["remaining"] for row in rows}
