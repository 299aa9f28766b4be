"""A realistic legacy data set (`manage.py pay10_seed_legacy`): what the old service left behind.

Works at the legacy state (`migrate payments 0001_initial`) and later: rows are written with plain
SQL naming only the legacy columns (SPEC.md "Legacy state"), COPY on PostgreSQL and batched
`executemany` on SQLite. Deterministic: the same tenant, seed and starting number give the same rows
(dates are relative to today, so that due dates fall in the past and the future).

Every legacy status and payment status, messy `method` spellings, and every anomaly the backfill
rules name: shortfalls, overpayments, inconsistent `amount_paid_cents`, succeeded payments on DRAFT,
VOID and unpaid invoices, unlinked payments, links to another tenant's invoices (a second tenant
`<tenant>-other` is created for them), payments in a currency not the tenant's, zero-amount invoices.
"""
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

CURRENCIES = ("USD", "KES", "EUR", "GBP")
OTHER_TENANT_SUFFIX = "-other"
NUMBER_PREFIX = "INV-"
CHUNK_INVOICES = 20_000

METHODS = (
    "card", " Card ", "CARD", "bank-transfer", "Bank Transfer", "bank_transfer", "bank", "transfer", "wire",
    "cash", "Cash ", "mpesa", "Mobile_Money", "mobile money", "mobile", "check", "cheque", "Cheque", "", "crypto",
    "paypal",
)

INVOICE_COLUMNS = (
    "tenant_id", "number", "amount_cents", "currency", "status", "amount_paid_cents",
    "issued_at", "due_date", "paid_at", "created_at", "updated_at",
)
PAYMENT_COLUMNS = (
    "tenant_id", "invoice_id", "amount_cents", "currency", "method", "reference", "status", "received_at",
    "created_at",
)

# (scenario, weight). Each names what the legacy row looks like; the backfill rules say what becomes of it.
# About 79% of invoices come out PAID or PARTIALLY_PAID (issue 6: "1M invoices, about 800k paid or
# part-paid"); the first invoices of every chunk go through every scenario once, so that any seed of
# at least len(SCENARIOS) invoices holds every status and anomaly.
SCENARIOS = (
    ("paid_exact", 90),
    ("paid_no_payments", 4),          # shortfall: PAID, nothing recorded
    ("paid_short", 4),                # shortfall: PAID, payments short
    ("paid_overpaid", 4),             # overpayment -> credit
    ("paid_with_pending", 2),         # a PENDING payment beside the money
    ("paid_inconsistent_figure", 2),  # PAID with amount_paid_cents != amount
    ("partial", 25),
    ("partial_due_past", 4),          # becomes OVERDUE
    ("partial_zero_figure", 2),       # PARTIALLY_PAID with amount_paid 0
    ("partial_figure_over_amount", 2),  # PARTIALLY_PAID with amount_paid > amount
    ("issued", 10),
    ("issued_due_past", 3),           # becomes OVERDUE
    ("issued_with_figure", 2),        # ISSUED with amount_paid > 0
    ("issued_succeeded_payment", 2),  # unpaid invoice with succeeded money -> credit
    ("overdue", 5),
    ("overdue_partial", 3),
    ("overdue_due_future", 2),        # becomes ISSUED
    ("draft", 4),
    ("draft_with_payment", 1),        # money on a DRAFT -> credit
    ("void", 2),
    ("void_with_payment", 2),         # money on a VOID -> credit
    ("zero_amount", 2),
    ("currency_mismatch", 1),         # payment in another currency: reported, not placed
)
_NAMES = tuple(name for name, _ in SCENARIOS)
_WEIGHTS = tuple(weight for _, weight in SCENARIOS)


@dataclass(frozen=True)
class SeedResult:
    tenant_id: str
    currency: str
    invoices: int
    payments: int
    first_number: str
    last_number: str
    other_tenant_id: str


def _at(day: date, rng: random.Random) -> datetime:
    moment = datetime.combine(day, time(hour=rng.randrange(8, 18), minute=rng.randrange(60), second=rng.randrange(60)))
    return timezone.make_aware(moment, timezone.get_current_timezone())


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` cents as `parts` positive amounts (fewer if total is too small)."""
    parts = max(1, min(parts, total))
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class ExtraMoney:
    """Shares of invoices that get, besides their scenario, a PENDING payment (`pending`) and a
    succeeded payment beyond what they are paid (`credit`: it becomes credit in the backfill), for a
    data set with many pending payments and credits (FIN-01's sums over them). Both 0 by default:
    the scenarios alone, rows unchanged."""

    pending: float = 0.0
    credit: float = 0.0


class _Generator:
    def __init__(self, *, tenant_id: str, currency: str, other_currency: str, today: date, rng: random.Random,
                 extra: ExtraMoney = ExtraMoney()):
        self.tenant_id = tenant_id
        self.currency = currency
        self.other_currency = other_currency
        self.today = today
        self.rng = rng
        self.extra = extra
        # its own stream, so that a seed without extra money gives the very rows it always gave
        self.extra_rng = random.Random(hash(rng.getstate())) if extra.pending or extra.credit else None

    def invoice(self, number: str, scenario: str | None = None) -> tuple[dict, list[dict]]:
        """One legacy invoice row and its payment rows (without invoice_id yet); the scenario is
        drawn by weight unless given."""
        rng = self.rng
        scenario = scenario or rng.choices(_NAMES, _WEIGHTS)[0]
        amount = 0 if scenario == "zero_amount" else rng.randrange(1, 5000) * 100 + rng.choice((0, 0, 50, 99))
        created = self.today - timedelta(days=rng.randrange(1, 400))
        issued = created + timedelta(days=rng.randrange(0, 3))
        due_past = self.today - timedelta(days=rng.randrange(1, 120))
        due_future = self.today + timedelta(days=rng.randrange(1, 60))
        row = {
            "status": "ISSUED", "amount_cents": amount, "amount_paid_cents": 0,
            "issued_at": _at(issued, rng), "due_date": due_future, "paid_at": None,
            "created_at": _at(created, rng),
        }
        payments: list[dict] = []

        def pay(cents: int, status: str = "SUCCEEDED", currency: str | None = None, parts: int = 1) -> None:
            for part in _split(cents, parts, rng) if cents > 0 else []:
                payments.append(self._payment(part, status, issued, currency or self.currency))

        match scenario:
            case "paid_exact":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=_at(issued + timedelta(days=5), rng))
                pay(amount, parts=rng.randrange(1, 4))
                if rng.random() < 0.3:
                    pay(rng.randrange(100, 5000), status=rng.choice(("FAILED", "REFUNDED")))
            case "paid_no_payments":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=rng.choice((None, _at(issued, rng))))
                if rng.random() < 0.3:
                    row["issued_at"] = None
            case "paid_short":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=_at(issued + timedelta(days=3), rng))
                pay(amount // 2, parts=rng.randrange(1, 3))
            case "paid_overpaid":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=_at(issued + timedelta(days=2), rng))
                pay(amount + rng.randrange(1, 2000) * 10, parts=rng.randrange(1, 3))
            case "paid_with_pending":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=_at(issued + timedelta(days=2), rng))
                pay(amount)
                pay(rng.randrange(100, 5000), status="PENDING")
            case "paid_inconsistent_figure":
                row.update(status="PAID", amount_paid_cents=rng.choice((0, amount // 2, amount * 2)))
                pay(amount)
            case "partial" | "partial_due_past":
                paid = rng.randrange(1, max(2, amount)) if amount > 1 else 0
                row.update(status="PARTIALLY_PAID", amount_paid_cents=paid)
                if scenario == "partial_due_past":
                    row["due_date"] = due_past
                pay(paid, parts=rng.randrange(1, 3))
                if rng.random() < 0.3:
                    pay(rng.randrange(100, 3000), status="PENDING")
            case "partial_zero_figure":
                row.update(status="PARTIALLY_PAID", amount_paid_cents=0)
                pay(amount // 3)
            case "partial_figure_over_amount":
                row.update(status="PARTIALLY_PAID", amount_paid_cents=amount + rng.randrange(1, 500) * 100)
                pay(amount // 2)
            case "issued":
                if rng.random() < 0.3:
                    pay(rng.randrange(100, max(101, amount)), status="PENDING")
                if rng.random() < 0.2:
                    pay(rng.randrange(100, 3000), status="FAILED")
            case "issued_due_past":
                row["due_date"] = due_past
            case "issued_with_figure":
                row["amount_paid_cents"] = max(1, amount // 4)
            case "issued_succeeded_payment":
                pay(max(1, amount // 2))
            case "overdue":
                row.update(status="OVERDUE", due_date=due_past)
            case "overdue_partial":
                paid = max(1, amount // 3)
                row.update(status="OVERDUE", due_date=due_past, amount_paid_cents=paid)
                pay(paid)
            case "overdue_due_future":
                row.update(status="OVERDUE")
            case "draft":
                row.update(status="DRAFT", issued_at=None, due_date=rng.choice((None, due_future)))
            case "draft_with_payment":
                row.update(status="DRAFT", issued_at=None, due_date=None)
                pay(max(1, amount))
            case "void":
                row.update(status="VOID")
            case "void_with_payment":
                row.update(status="VOID", amount_paid_cents=rng.choice((0, amount)))
                pay(max(1, amount), status=rng.choice(("SUCCEEDED", "REFUNDED")))
            case "zero_amount":
                row.update(status=rng.choice(("ISSUED", "PAID", "DRAFT")))
            case "currency_mismatch":
                row.update(status="PAID", amount_paid_cents=amount, paid_at=_at(issued + timedelta(days=1), rng))
                pay(max(1, amount), currency=self.other_currency)
        if self.extra_rng is not None:
            extra = self.extra_rng
            if extra.random() < self.extra.pending:
                payments.append(self._payment(extra.randrange(100, 5000) * 10, "PENDING", issued, self.currency, extra))
            if extra.random() < self.extra.credit:
                payments.append(self._payment(extra.randrange(100, 5000) * 10, "SUCCEEDED", issued, self.currency, extra))
        row["updated_at"] = row["paid_at"] or row["issued_at"] or row["created_at"]
        row.update(tenant_id=self.tenant_id, number=number, currency=self.currency)
        return row, payments

    def _payment(self, cents: int, status: str, after: date, currency: str, rng: random.Random | None = None) -> dict:
        rng = rng or self.rng
        days = max(0, (self.today - after).days)
        received = _at(after + timedelta(days=rng.randrange(0, days + 1)), rng)
        return {
            "tenant_id": self.tenant_id, "invoice_id": None, "amount_cents": cents, "currency": currency,
            "method": rng.choice(METHODS), "reference": rng.choice(("", f"TX{rng.randrange(10**9):09d}")),
            "status": status, "received_at": received, "created_at": received,
        }

    def loose_payment(self, invoice_id: int | None) -> dict:
        """An unlinked payment, or one linked to another tenant's invoice."""
        status = self.rng.choices(("SUCCEEDED", "PENDING", "FAILED", "REFUNDED"), (6, 2, 1, 1))[0]
        row = self._payment(self.rng.randrange(1, 3000) * 100, status, self.today - timedelta(days=90), self.currency)
        row["invoice_id"] = invoice_id
        return row


def _insert(connection, table: str, columns: Sequence[str], rows: Iterable[dict]) -> int:
    ops = connection.ops
    adapt = {
        "issued_at": ops.adapt_datetimefield_value, "paid_at": ops.adapt_datetimefield_value,
        "created_at": ops.adapt_datetimefield_value, "updated_at": ops.adapt_datetimefield_value,
        "received_at": ops.adapt_datetimefield_value, "due_date": ops.adapt_datefield_value,
    }
    values = [tuple(adapt[c](row[c]) if c in adapt else row[c] for c in columns) for row in rows]
    if not values:
        return 0
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", values)
    return len(values)


def _fetch(connection, sql: str, params: Sequence) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _tenant_ensure(connection, tenant_id: str, currency: str) -> str:
    rows = _fetch(connection, "SELECT currency FROM billing_tenant WHERE id = %s", [tenant_id])
    if rows:
        return rows[0][0]
    name = tenant_id.replace("-", " ").title()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_tenant (id, name, currency, created_at) VALUES (%s, %s, %s, %s)",
            [tenant_id, name, currency, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
    return currency


def _next_number(connection, tenant_id: str) -> int:
    rows = _fetch(
        connection,
        "SELECT number FROM billing_invoice WHERE tenant_id = %s AND number LIKE %s "
        "ORDER BY LENGTH(number) DESC, number DESC LIMIT 1",
        [tenant_id, f"{NUMBER_PREFIX}%"],
    )
    if not rows:
        return 1
    digits = rows[0][0][len(NUMBER_PREFIX):]
    return int(digits) + 1 if digits.isdigit() else 1


def _max_invoice_id(connection) -> int:
    return _fetch(connection, "SELECT COALESCE(MAX(id), 0) FROM billing_invoice", [])[0][0]


def _invoices_insert(connection, generator: _Generator, first: int, count: int) -> tuple[list[int], int]:
    """Insert `count` invoices numbered from `first` and their payments; returns (ids, payments)."""
    before = _max_invoice_id(connection)
    generated = [
        generator.invoice(f"{NUMBER_PREFIX}{first + i:08d}", _NAMES[i] if i < len(_NAMES) else None)
        for i in range(count)
    ]
    _insert(connection, "billing_invoice", INVOICE_COLUMNS, (row for row, _ in generated))
    ids = dict(_fetch(
        connection,
        "SELECT number, id FROM billing_invoice WHERE tenant_id = %s AND id > %s",
        [generator.tenant_id, before],
    ))
    payments = []
    for row, invoice_payments in generated:
        for payment in invoice_payments:
            payment["invoice_id"] = ids[row["number"]]
            payments.append(payment)
    payments.sort(key=lambda p: (p["received_at"], p["invoice_id"]))
    return [ids[row["number"]] for row, _ in generated], _insert(connection, "payments_payment", PAYMENT_COLUMNS, payments)


def legacy_seed(
    *, tenant_id: str, invoices: int, seed: int = 0, extra: ExtraMoney = ExtraMoney(), using: str = DEFAULT_DB_ALIAS
) -> SeedResult:
    """Append `invoices` legacy invoices (and their payments) to `tenant_id`, creating it if needed;
    `extra` adds pending payments and money that becomes credit to a share of them."""
    if not (0 <= extra.pending <= 1 and 0 <= extra.credit <= 1):
        raise ValueError("the extra money shares must be within 0..1")
    if invoices < 1:
        raise ValueError("invoices must be at least 1")
    connection = connections[using]
    today = timezone.localdate()
    with transaction.atomic(using=using):
        currency = _tenant_ensure(connection, tenant_id, CURRENCIES[seed % len(CURRENCIES)])
        other_id = f"{tenant_id}{OTHER_TENANT_SUFFIX}"
        other_currency = _tenant_ensure(connection, other_id, currency)
        foreign_currency = next(c for c in CURRENCIES if c != currency)
        first = _next_number(connection, tenant_id)
        payments = 0
        invoice_ids: list[int] = []
        for offset in range(0, invoices, CHUNK_INVOICES):
            count = min(CHUNK_INVOICES, invoices - offset)
            rng = random.Random(f"{seed}:{tenant_id}:{first + offset}")
            generator = _Generator(
                tenant_id=tenant_id, currency=currency, other_currency=foreign_currency, today=today, rng=rng,
                extra=extra,
            )
            ids, inserted = _invoices_insert(connection, generator, first + offset, count)
            invoice_ids += ids
            payments += inserted

        # The other tenant: a few invoices of its own, so that links can cross tenants both ways.
        rng = random.Random(f"{seed}:{other_id}:{first}")
        other = _Generator(tenant_id=other_id, currency=other_currency, other_currency=foreign_currency, today=today,
                           rng=rng)
        other_count = max(3, invoices // 100)
        other_ids, inserted = _invoices_insert(
            connection, other, _next_number(connection, other_id), other_count
        )
        payments += inserted

        mine = _Generator(tenant_id=tenant_id, currency=currency, other_currency=foreign_currency, today=today,
                          rng=random.Random(f"{seed}:{tenant_id}:loose:{first}"))
        loose = [mine.loose_payment(None) for _ in range(max(2, invoices // 50))]
        loose += [mine.loose_payment(rng.choice(other_ids)) for _ in range(max(2, invoices // 200))]
        loose += [other.loose_payment(rng.choice(invoice_ids)) for _ in range(max(1, invoices // 400))]
        payments += _insert(connection, "payments_payment", PAYMENT_COLUMNS, loose)
    return SeedResult(
        tenant_id=tenant_id,
        currency=currency,
        invoices=invoices,
        payments=payments,
        first_number=f"{NUMBER_PREFIX}{first:08d}",
        last_number=f"{NUMBER_PREFIX}{first + invoices - 1:08d}",
        other_tenant_id=other_id,
    )
