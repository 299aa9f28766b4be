"""SQL twin of the status engine, for set-based readers (FIN-01, FIN-02, the backfill, verify).

`tests/payments/domain/test_status.py` holds it equal to `payments.domain.status.invoice_status`
on generated cases, so the rule still lives in one place.
"""
from datetime import date

from django.db.models import CharField, Case, Expression, F, Q, Value, When
from django.db.models.lookups import GreaterThan, GreaterThanOrEqual

from payments.domain import status as engine


def invoice_status_expression(*, paid: Expression, today: date) -> Case:
    """The engine's verdict for an invoice row, given an expression for its paid cents."""
    return Case(
        When(status__in=sorted(engine.EXPLICIT_STATUSES), then=F("status")),
        When(GreaterThanOrEqual(paid, F("amount_cents")), then=Value(engine.PAID)),
        When(Q(due_date__lt=today), then=Value(engine.OVERDUE)),
        When(GreaterThan(paid, 0), then=Value(engine.PARTIALLY_PAID)),
        default=Value(engine.ISSUED),
        output_field=CharField(),
    )
