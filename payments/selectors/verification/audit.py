"""Invariant 6: every money row has its audit row (see the package's docstring for what covers what)."""
from collections import defaultdict

from django.db.models import BigIntegerField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from billing.models import Tenant
from payments.domain.backfill import SYNTHETIC_KEY_PREFIX
from payments.models import AllocationReversal, Allocation, AuditEvent, Channel, Credit, Payment, PaymentAuditLog, PaymentMigration, Refund
from payments.selectors.balances import ZERO
from payments.selectors.verification.messages import AUDIT_MISSING, AUDIT_OK
from payments.selectors.verification.result import MAX_EXAMPLES, CheckResult, check_result, scoped

# Audit events that record an allocation being released.
REVERSAL_EVENTS = (
    AuditEvent.ALLOCATION_REVERSED,
    AuditEvent.PAYMENT_REJECTED,
    AuditEvent.INVOICE_VOIDED,
    AuditEvent.ORPHAN_REMOVED,
)


def _unaudited(**match) -> Exists:
    """NOT EXISTS an audit row matching: a plain anti-join in the WHERE clause."""
    return ~Exists(PaymentAuditLog.objects.filter(**match))


def _written_unaudited(rows: QuerySet, *, own: str, batch: str, batch_ref: str) -> list[QuerySet]:
    """Rows with no audit row of their own: one written live, or a backfilled one whose backfill batch
    (the audit row of its `batch` parent, read from `batch_ref`) has none either."""
    return [
        rows.filter(_unaudited(**{own: OuterRef("pk")}), backfilled=False),
        rows.filter(
            _unaudited(**{own: OuterRef("pk")}),
            _unaudited(**{batch: OuterRef(batch_ref)}, backfilled=True),
            backfilled=True,
        ),
    ]


def synthetic_payment_condition() -> Q:
    """The payments the backfill made up to cover a shortfall."""
    return Q(channel=Channel.LEGACY) | Q(idempotency_key__startswith=SYNTHETIC_KEY_PREFIX)


def unaudited_rows(*, tenant: Tenant | None = None) -> dict[str, list[QuerySet]]:
    """Per kind of money row, querysets of the rows of that kind lacking their audit row. Each is a
    conjunction of anti-joins, so the database answers it in one pass."""
    allocations = scoped(Allocation.objects.all(), tenant)
    credits = scoped(Credit.objects.all(), tenant)
    payments = scoped(Payment.objects.all(), tenant)
    refund_audits = (
        PaymentAuditLog.objects.filter(payment_id=OuterRef("pk"), event_type=AuditEvent.PAYMENT_REFUNDED)
        .order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    refunds = (
        Refund.objects.filter(payment_id=OuterRef("pk")).order_by().values("payment_id").annotate(n=Count("pk")).values("n")
    )
    return {
        "allocation": _written_unaudited(allocations, own="allocation_id", batch="invoice_id", batch_ref="invoice_id"),
        "reversal": [
            scoped(AllocationReversal.objects.all(), tenant, "allocation__tenant").filter(
                _unaudited(allocation_id=OuterRef("allocation_id"), event_type__in=REVERSAL_EVENTS)
            )
        ],
        "credit": _written_unaudited(credits, own="credit_id", batch="payment_id", batch_ref="source_payment_id"),
        "refunded payment": [
            payments.filter(Exists(Refund.objects.filter(payment_id=OuterRef("pk"))))
            .annotate(
                refund_count=Subquery(refunds, output_field=BigIntegerField()),
                refund_audit_count=Coalesce(Subquery(refund_audits, output_field=BigIntegerField()), ZERO),
            )
            .filter(refund_count__gt=F("refund_audit_count"))
        ],
        "PAY-10 payment": [
            payments.filter(verification_status__isnull=False)
            .exclude(synthetic_payment_condition())
            .filter(~Exists(PaymentMigration.objects.filter(payment_id=OuterRef("pk"))), _unaudited(payment_id=OuterRef("pk")))
        ],
        "synthetic payment": [
            payments.filter(synthetic_payment_condition()).filter(
                _unaudited(payment_id=OuterRef("pk"), backfilled=True),
                _unaudited(invoice_id=OuterRef("invoice_id"), backfilled=True),
            )
        ],
    }


def check_audit_trail(*, tenant: Tenant | None = None) -> CheckResult:
    counts: dict[str, int] = defaultdict(int)
    examples: list[dict] = []
    for kind, querysets in unaudited_rows(tenant=tenant).items():
        for queryset in querysets:
            found = queryset.count()
            counts[kind] += found
            if found and len(examples) < MAX_EXAMPLES:
                ids = queryset.order_by("pk").values_list("pk", flat=True)[: MAX_EXAMPLES - len(examples)]
                examples += [{"kind": kind, "id": pk} for pk in ids]
    count = sum(counts.values())
    by_kind = ", ".join(f"{n} {kind}(s)" for kind, n in counts.items() if n)
    return check_result(
        "audit_trail_complete", count=count, ok_text=AUDIT_OK, failed_text=AUDIT_MISSING, examples=examples, by_kind=by_kind
    )
