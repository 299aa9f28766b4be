"""The status engine: one pure function from an invoice's money and dates to its status.

SPEC.md "Status engine". `VOID` and `DRAFT` are explicit states that only an explicit action
changes. Otherwise, with `paid_cents` = money from VERIFIED payments and from credits applied to
the invoice: PAID if paid >= amount (a zero-amount issued invoice is PAID); else OVERDUE if the
due date is before today; else PARTIALLY_PAID if paid > 0; else ISSUED.

The stored `billing_invoice.status` is only a cache of this verdict. Set-based readers use
`payments.selectors.status.invoice_status_expression`, its ORM twin; raw SQL uses
`payments.database.rules.status_verdict` (and the read model `rules.money_state`, the part that does
not depend on the date). Property tests hold both equal to this function
(tests/payments/domain/test_status.py, tests/payments/selectors/test_rule_twins.py).
The statuses are `billing.models.InvoiceStatus`'s, tied by tests/payments/domain/test_vocabulary.py.
"""
from datetime import date

DRAFT = "DRAFT"
ISSUED = "ISSUED"
PARTIALLY_PAID = "PARTIALLY_PAID"
PAID = "PAID"
OVERDUE = "OVERDUE"
VOID = "VOID"

EXPLICIT_STATUSES = frozenset({DRAFT, VOID})
ALL_STATUSES = (DRAFT, ISSUED, PARTIALLY_PAID, PAID, OVERDUE, VOID)


def invoice_status(
    *, current_status: str, amount_cents: int, paid_cents: int, due_date: date | None, today: date
) -> str:
    """The status an invoice has today. Pending money never counts; only verified money and credit do."""
    if current_status not in ALL_STATUSES:
        raise ValueError(f"unknown invoice status {current_status!r}")
    if current_status in EXPLICIT_STATUSES:
        return current_status
    if paid_cents >= amount_cents:
        return PAID
    if due_date is not None and due_date < today:
        return OVERDUE
    if paid_cents > 0:
        return PARTIALLY_PAID
    return ISSUED


def legacy_paid_cents(*, status: str, amount_cents: int, amount_paid_cents: int) -> int:
    """The paid figure a legacy (not yet migrated) invoice stands for (SPEC.md backfill rules)."""
    if status == PAID:
        return amount_cents
    if status in (ISSUED, PARTIALLY_PAID, OVERDUE):
        return min(max(amount_paid_cents, 0), amount_cents)
    return 0
