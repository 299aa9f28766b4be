"""What every part of the backfill shares: its messages and constants, its refusal, the models it
works on (live or a migration's historical ones), the result of a batch, the crash hook of the tests.
"""
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef

from payments.domain import status as engine

BACKFILL_ALREADY_RUNNING = "another PAY-10 backfill is running on this database; only one may run at a time"
BACKFILL_SHARD_ALREADY_RUNNING = (
    "shard {shard} of the PAY-10 backfill is already running on this database, or an unsharded run is"
)
BAD_SHARD = "a shard is i/K with 1 <= i <= K (e.g. 1/2), got {shard!r}"
BACKFILL_NEEDS_TRANSACTION = "migrate-if-needed runs inside the transaction of the write that needs it"
KEY_COLLISION = (
    "payment {payment} of tenant {tenant} holds idempotency key {key!r}, which the backfill needs for invoice "
    "{invoice}'s synthetic payment; give that payment another key, then run again (this batch wrote nothing)"
)
REVERSE_REFUSED = (
    "cannot reverse the PAY-10 backfill: money rows recorded after it use rows it created ({detail}); "
    "resolve them first, nothing was changed"
)

ADVISORY_LOCK_KEY = zlib.crc32(b"pay10_backfill")
DEFAULT_BATCH_SIZE = 1000
AUDIT_ACTOR = "pay10-backfill"
UNPAID = "UNPAID"  # summary bucket: every legacy status but PAID and PARTIALLY_PAID
# Keys of `BackfillRun.counts` that are not tallies: the shard's label, the console's live figures.
RUN_LABELS = ("shard", "console")

# Test hook: called as `crash_hook(stage, batch_number)` at "batch-start", "mid-batch" and
# "batch-end" (after the cursor is written, before commit). Tests make it raise to simulate a kill
# (`monkeypatch.setattr(payments.services.backfill.common, "crash_hook", ...)`).
crash_hook: Callable[[str, int], None] | None = None


def hook(stage: str, batch_number: int) -> None:
    if crash_hook is not None:
        crash_hook(stage, batch_number)


class BackfillError(Exception):
    """A refusal with a one-line message for the operator."""


# --------------------------------------------------------------------------------------------
# Models: from the live registry or a migration's historical one.


class BackfillModels:
    """The models the backfill reads and writes, from the live registry or a migration's historical one."""

    NAMES = (
        ("billing", ("Tenant", "Invoice")),
        ("payments", ("Payment", "Allocation", "AllocationReversal", "Credit", "Refund", "PaymentAuditLog",
                      "BackfillRun", "InvoiceMigration", "PaymentMigration", "BackfillDeviation")),
    )

    def __init__(self, apps) -> None:
        for app_label, names in self.NAMES:
            for name in names:
                setattr(self, name, apps.get_model(app_label, name))

    def legacy_payments(self, using: str):
        """Legacy payment rows the backfill has not mapped yet (PAY-10 payments carry a verification status)."""
        return self.Payment.objects.using(using).filter(verification_status__isnull=True).exclude(
            Exists(self.PaymentMigration.objects.filter(payment_id=OuterRef("pk")))
        )

    def unmigrated_invoices(self, using: str):
        return self.Invoice.objects.using(using).exclude(
            Exists(self.InvoiceMigration.objects.filter(invoice_id=OuterRef("pk")))
        )


# --------------------------------------------------------------------------------------------
# One batch's tally.



@dataclass
class BatchResult:
    by_legacy_status: Counter = field(default_factory=Counter)
    payments: int = 0
    synthetic_payments: int = 0
    allocations: int = 0
    credits: int = 0
    deviations: int = 0
    statuses_changed: int = 0
    migrated_payment_ids: set[int] = field(default_factory=set)
    migrated_invoices: list[tuple[str, str]] = field(default_factory=list)  # (number, legacy status)

    def add(self, other: "BatchResult") -> None:
        self.by_legacy_status.update(other.by_legacy_status)
        self.payments += other.payments
        self.synthetic_payments += other.synthetic_payments
        self.allocations += other.allocations
        self.credits += other.credits
        self.deviations += other.deviations
        self.statuses_changed += other.statuses_changed
        self.migrated_payment_ids |= other.migrated_payment_ids
        self.migrated_invoices += other.migrated_invoices

    def counts(self) -> dict[str, int]:
        return {
            engine.PAID: self.by_legacy_status[engine.PAID],
            engine.PARTIALLY_PAID: self.by_legacy_status[engine.PARTIALLY_PAID],
            UNPAID: sum(n for s, n in self.by_legacy_status.items() if s not in (engine.PAID, engine.PARTIALLY_PAID)),
            "payments": self.payments,
            "syntheticPayments": self.synthetic_payments,
            "allocations": self.allocations,
            "credits": self.credits,
            "deviations": self.deviations,
            "statusesChanged": self.statuses_changed,
        }


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ids_literal(ids: Iterable[int]) -> str:
    """An integer array as one text parameter (`'{1,2,3}'`, cast in the SQL): psycopg's client-side
    binding otherwise quotes every element in Python. Integers only; anything else fails the cast."""
    return "{" + ",".join(map(str, ids)) + "}"
