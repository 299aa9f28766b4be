"""Live traffic on the legacy tables while the backfill runs (issue 14, "linear growth under traffic").

`LegacyTraffic(database, tenant, rows_per_second=80)` is a thread that writes as the live (old)
application does, on its own connection, at a steady rate, each write its own transaction:

- a new invoice and its payment: insert an ISSUED invoice, insert a SUCCEEDED payment of its full
  amount (legacy columns only: no channel, no verification status), mark the invoice PAID with its
  `amount_paid_cents` — three rows in one transaction, as the old checkout did;
- an update of an existing invoice (`updated_at`), a random one among those present at the start.

Four rows per cycle; the cycle is paced so the rows per second stay at the rate asked (or below it
when a write waits on a row the backfill's batch holds: the longest such wait is reported).
"""
from __future__ import annotations

import random
import threading
import time

import common

NEW_INVOICE = (
    "INSERT INTO billing_invoice (tenant_id, number, amount_cents, currency, status, amount_paid_cents, issued_at, "
    "due_date, paid_at, created_at, updated_at) "
    "SELECT t.id, %(number)s, %(amount)s, t.currency, 'ISSUED', 0, now(), current_date + 30, NULL, now(), now() "
    "FROM billing_tenant t WHERE t.id = %(tenant)s RETURNING id, currency"
)
NEW_PAYMENT = (
    "INSERT INTO payments_payment (tenant_id, invoice_id, amount_cents, currency, method, reference, status, "
    "received_at, created_at) VALUES (%(tenant)s, %(invoice)s, %(amount)s, %(currency)s, 'card', %(number)s, "
    "'SUCCEEDED', now(), now())"
)
MARK_PAID = (
    "UPDATE billing_invoice SET status = 'PAID', amount_paid_cents = amount_cents, paid_at = now(), updated_at = now() "
    "WHERE id = %(invoice)s"
)
TOUCH_INVOICE = "UPDATE billing_invoice SET updated_at = now() WHERE id = %s"
ROWS_PER_CYCLE = 4


class LegacyTraffic(threading.Thread):
    def __init__(self, database: str, tenant: str, rows_per_second: float = 80.0):
        super().__init__(daemon=True)
        self.database, self.tenant, self.rate = database, tenant, rows_per_second
        self.stop_event = threading.Event()
        self.rows = 0
        self.failures: list[str] = []
        self.longest_ms = 0.0
        self.started_at = self.stopped_at = 0.0

    def stop(self) -> dict:
        self.stop_event.set()
        self.join()
        seconds = self.stopped_at - self.started_at
        return {
            "rows_per_second_asked": self.rate,
            "rows_written": self.rows,
            "rows_per_second": self.rows / seconds if seconds else 0.0,
            "longest_write_ms": round(self.longest_ms, 1),
            "failures": len(self.failures),
            "failure_examples": self.failures[:5],
        }

    def run(self) -> None:
        rng = random.Random(14)
        cycle = ROWS_PER_CYCLE / self.rate
        with common.psycopg.connect(common.database_url(self.database), autocommit=True) as conn:
            conn.execute("SET statement_timeout = '120s'")
            upper = conn.execute("SELECT max(id) FROM billing_invoice").fetchone()[0] or 1
            self.started_at = time.monotonic()
            next_at = self.started_at
            number = 0
            while not self.stop_event.is_set():
                number += 1
                began = time.monotonic()
                try:
                    with conn.transaction():
                        amount = rng.randint(1_000, 500_000)
                        values = {"tenant": self.tenant, "number": f"TRAFFIC-{int(began * 1000)}-{number}", "amount": amount}
                        invoice, currency = conn.execute(NEW_INVOICE, values).fetchone()
                        values |= {"invoice": invoice, "currency": currency}
                        conn.execute(NEW_PAYMENT, values)
                        conn.execute(MARK_PAID, values)
                    self.rows += 3
                    conn.execute(TOUCH_INVOICE, [rng.randint(1, upper)])
                    self.rows += 1
                except Exception as error:  # a failed write is a finding, not a crash of the bench
                    self.failures.append(f"{type(error).__name__}: {error}".splitlines()[0])
                self.longest_ms = max(self.longest_ms, (time.monotonic() - began) * 1000)
                next_at += cycle
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
            self.stopped_at = time.monotonic()
