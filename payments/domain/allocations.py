"""What an allocation's money means, as pure functions (no ORM): the Python half of the rules whose
SQL half is `payments/database/rules.py`; tests run both over generated ledgers.

Two invoice figures differ on purpose and carry different names in both languages:
- PAID (`pays_invoice`, SQL `PAYS_INVOICE`): active allocations of VERIFIED payments and of credits,
  what the status engine, FIN-01/FIN-02 and the read model call paid;
- COUNTED AGAINST the invoice (`counted_against_invoice`, SQL `COUNTED_AGAINST_INVOICE`): every active
  allocation but a REJECTED payment's, legacy rows with no verification status included: the bound
  the guard keeps (SPEC invariant 3), not a paid figure.
"""
from dataclasses import dataclass

# Verification statuses (`payments.models.VerificationStatus`; a test ties the two).
PENDING = "PENDING"
VERIFIED = "VERIFIED"
REJECTED = "REJECTED"
VERIFICATION_STATUSES = (PENDING, VERIFIED, REJECTED)


@dataclass(frozen=True, slots=True)
class AllocationMoney:
    """One allocation as the rules see it: its amount, whether it is reversed, and its source (a
    credit, or a payment with its verification status, None for a legacy row not verified yet)."""

    amount_cents: int
    reversed: bool
    from_credit: bool
    payment_verification: str | None = None


def is_active(allocation: AllocationMoney) -> bool:
    return not allocation.reversed


def pays_invoice(allocation: AllocationMoney) -> bool:
    return is_active(allocation) and (allocation.from_credit or allocation.payment_verification == VERIFIED)


def pending_on_invoice(allocation: AllocationMoney) -> bool:
    return is_active(allocation) and not allocation.from_credit and allocation.payment_verification == PENDING


def counted_against_invoice(allocation: AllocationMoney) -> bool:
    return is_active(allocation) and (allocation.from_credit or allocation.payment_verification != REJECTED)


def invoice_paid_cents(allocations) -> int:
    return sum(a.amount_cents for a in allocations if pays_invoice(a))


def invoice_pending_cents(allocations) -> int:
    return sum(a.amount_cents for a in allocations if pending_on_invoice(a))


def invoice_counted_cents(allocations) -> int:
    return sum(a.amount_cents for a in allocations if counted_against_invoice(a))


def is_orphan(*, parent_missing: bool, reversed: bool, crosses: bool) -> bool:
    """SPEC invariant 4: an allocation whose invoice, payment or credit is missing (reversed or not),
    or an active one whose invoice, payment or credit is in another tenant or currency. A reversed
    crossing allocation is history (its money counts nowhere; `pay10_cleanup_orphans` neutralises a
    crossing allocation by reversing it), so it is not an orphan."""
    return parent_missing or (not reversed and crosses)
