"""Balance arithmetic on integer cents: the one place each derived figure is defined."""
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InvoiceBalance:
    amount_cents: int
    paid_cents: int
    pending_cents: int

    @property
    def balance_cents(self) -> int:
        """What no applied money covers yet: pending money counts against it (it may still be verified)."""
        return self.amount_cents - self.paid_cents - self.pending_cents

    @property
    def outstanding_cents(self) -> int:
        """What is still owed for certain: only verified money and credit reduce it."""
        return self.amount_cents - self.paid_cents


@dataclass(frozen=True, slots=True)
class PaymentBalance:
    """A payment's money. Two refund sums, on purpose:
    - `refunded_cents`: refunds of its unallocated money (no credit attached), the term that, with
      what is allocated and credited, accounts for every cent of the payment (`unallocated_cents`);
    - `refunded_total_cents` (`refunded_total`): every refund of the payment, out of its unallocated
      money or out of one of its credits: what went back to the customer, the figure the legacy
      REFUNDED status compares with the amount."""

    amount_cents: int
    allocated_cents: int
    credited_cents: int
    refunded_cents: int

    @property
    def unallocated_cents(self) -> int:
        return payment_unallocated(
            amount_cents=self.amount_cents, allocated_cents=self.allocated_cents,
            credited_cents=self.credited_cents, refunded_unallocated_cents=self.refunded_cents,
        )


def payment_unallocated(
    *, amount_cents: int, allocated_cents: int, credited_cents: int, refunded_unallocated_cents: int
) -> int:
    """What of a payment is still free: neither allocated (active allocations), nor turned into
    credit, nor refunded out of its unallocated money. Its usage is the rest (SPEC invariant 1)."""
    return amount_cents - allocated_cents - credited_cents - refunded_unallocated_cents


def refunded_total(*, refunds_of_unallocated_cents: int, refunds_of_credits_cents: int) -> int:
    """Everything refunded of a payment: the legacy REFUNDED status holds when it equals the amount."""
    return refunds_of_unallocated_cents + refunds_of_credits_cents


def credit_remaining(*, amount_cents: int, applied_cents: int, refunded_cents: int) -> int:
    """What a credit still holds: its amount less its active applications and its refunds (SPEC invariant 2)."""
    return amount_cents - applied_cents - refunded_cents


@dataclass(frozen=True, slots=True)
class CreditBalance:
    amount_cents: int
    applied_cents: int
    refunded_cents: int

    @property
    def remaining_cents(self) -> int:
        return credit_remaining(
            amount_cents=self.amount_cents, applied_cents=self.applied_cents, refunded_cents=self.refunded_cents
        )
