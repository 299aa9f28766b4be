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
    amount_cents: int
    allocated_cents: int
    credited_cents: int
    refunded_cents: int

    @property
    def unallocated_cents(self) -> int:
        return self.amount_cents - self.allocated_cents - self.credited_cents - self.refunded_cents


@dataclass(frozen=True, slots=True)
class CreditBalance:
    amount_cents: int
    applied_cents: int
    refunded_cents: int

    @property
    def remaining_cents(self) -> int:
        return self.amount_cents - self.applied_cents - self.refunded_cents
