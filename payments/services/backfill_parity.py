"""The backfill's parity gate: FIN-01 ALL_TIME per tenant and currency at the run's start, compared
every N batches (and at the end); a figure that moved in a tenant the application did not write to
stops the run (`payments.services.backfill_control` raises `BackfillParityBroken`).

The figures themselves are FIN-01's, which `billing.selectors` computes on top of payments'
selectors: the gate receives the function that reads them (`figures`; the command passes
`billing.selectors.parity.fin01_parity_figures`), so payments' services import nothing of billing's
beyond its models."""
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import Max, Q
from django.utils import timezone

# Application writes this long before a parity check still count as activity (their transaction
# may have committed after the previous check's snapshot).
ACTIVITY_SLACK = timedelta(minutes=1)


def newest_ids() -> tuple[int, int]:
    """The highest invoice and payment ids: rows above them are new at the next check."""
    from billing.models import Invoice
    from payments.models import Payment

    return (Invoice.objects.aggregate(top=Max("pk"))["top"] or 0, Payment.objects.aggregate(top=Max("pk"))["top"] or 0)


def tenants_written_since(*, since, after_ids: tuple[int, int], tenant_ids: list[str]) -> set[str]:
    """Tenants the application wrote money rows for since the previous check: an audited operation
    (an audit row the backfill did not write, timed at most `ACTIVITY_SLACK` before that check, as
    its transaction may have committed after it), or an invoice or payment added since (ids above
    those the check saw; the backfill's synthetic payments aside). Their figures may move
    legitimately, so the gate takes their current figures as its new reference."""
    from billing.models import Invoice
    from payments.domain.backfill import SYNTHETIC_KEY_PREFIX
    from payments.models import Payment, PaymentAuditLog

    scope = Q(tenant_id__in=tenant_ids)
    written = set(
        PaymentAuditLog.objects.filter(scope, backfilled=False, event_time__gte=since - ACTIVITY_SLACK)
        .values_list("tenant_id", flat=True).distinct()
    )
    written |= set(Invoice.objects.filter(scope, pk__gt=after_ids[0]).values_list("tenant_id", flat=True).distinct())
    written |= set(
        Payment.objects.filter(scope, pk__gt=after_ids[1])
        .exclude(idempotency_key__startswith=SYNTHETIC_KEY_PREFIX)
        .values_list("tenant_id", flat=True).distinct()
    )
    return written


@dataclass
class ParityGate:
    """FIN-01 at the run's start, compared every `every` batches (and at the end)."""

    tenant_ids: list[str]
    today: date
    every: int
    # (tenant_ids=, today=) -> {(tenant, currency, figure): cents or count}
    figures: Callable[..., dict[tuple[str, str, str], int]]
    reference: dict = field(default_factory=dict)
    checked_at: object = None
    seen_ids: tuple[int, int] = (0, 0)
    batches_since: int = 0
    checks: int = 0

    def start(self) -> None:
        from payments.selectors.verification import one_snapshot

        with one_snapshot():
            self.checked_at, self.seen_ids = timezone.now(), newest_ids()
            self.reference = self.figures(tenant_ids=self.tenant_ids, today=self.today)

    def due(self) -> bool:
        self.batches_since += 1
        return bool(self.every) and self.batches_since >= self.every

    def differences(self) -> list[dict]:
        """Figures that moved since the reference, in tenants the application did not write to;
        the reference then becomes the current figures."""
        from payments.selectors.verification import one_snapshot

        with one_snapshot():
            now, seen_ids = timezone.now(), newest_ids()
            current = self.figures(tenant_ids=self.tenant_ids, today=self.today)
            excused = tenants_written_since(since=self.checked_at, after_ids=self.seen_ids, tenant_ids=self.tenant_ids)
        self.batches_since = 0
        self.checks += 1
        moved = [
            {"tenant": key[0], "currency": key[1], "figure": key[2], "before": self.reference.get(key, 0),
             "after": current.get(key, 0)}
            for key in dict.fromkeys([*self.reference, *current])  # FIN-01's order: invoicedCents first
            if key[0] not in excused and self.reference.get(key, 0) != current.get(key, 0)
        ]
        if not moved:
            self.reference, self.checked_at, self.seen_ids = current, now, seen_ids
        return moved
