"""One runner at a time, or K shards: the backfill's locks (a PostgreSQL advisory lock, or a file
lock on SQLite) and the shard's share of the invoices and legacy payments."""
import fcntl
import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Case, F, Value, When
from django.db.models.functions import Mod

from payments.services.backfill.common import (
    ADVISORY_LOCK_KEY,
    BACKFILL_ALREADY_RUNNING,
    BACKFILL_SHARD_ALREADY_RUNNING,
    BAD_SHARD,
    BackfillError,
)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): invoices with `id % count == index - 1`, and legacy
    payments whose owner id does: the owner is the invoice when the payment is linked to one of its
    own tenant (so a shard never touches another shard's invoices), the payment itself otherwise."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(BAD_SHARD.format(shard=f"{self.index}/{self.count}"))

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`"i/K"` -> Shard(i, K); ValueError(BAD_SHARD) otherwise."""
        index, slash, count = text.strip().partition("/")
        if not slash or not index.isdigit() or not count.isdigit():
            raise ValueError(BAD_SHARD.format(shard=text))
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise ValueError(BAD_SHARD.format(shard=text)) from None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def lock_key(self) -> int:
        return zlib.crc32(f"pay10_backfill:{self.label}".encode())

    def invoices(self, queryset):
        return queryset.alias(pay10_shard=Mod("pk", Value(self.count))).filter(pay10_shard=self.index - 1)

    def payments(self, queryset):
        owner = Case(When(tenant_id=F("invoice__tenant_id"), then=F("invoice_id")), default=F("pk"))
        return queryset.alias(pay10_shard=Mod(owner, Value(self.count))).filter(pay10_shard=self.index - 1)


def shard_invoices(queryset, shard: Shard | None):
    return queryset if shard is None else shard.invoices(queryset)


def shard_payments(queryset, shard: Shard | None):
    return queryset if shard is None else shard.payments(queryset)


def _sqlite_lock_path(connection, *, shard: Shard | None = None) -> Path:
    """The lock file of one SQLite database (and shard): in the temp dir, named after the database
    file's absolute path (an in-memory database lives in one process only, so its pid names it)."""
    name = str(connection.settings_dict["NAME"])
    if connection.is_in_memory_db():
        key = f"{name}:{os.getpid()}"
    else:
        key = str(Path(name).resolve())
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    suffix = f"-shard-{shard.index}-of-{shard.count}" if shard else ""
    return Path(tempfile.gettempdir()) / f"pay10_backfill-{digest}{suffix}.lock"


@contextmanager
def backfill_lock(*, using: str = DEFAULT_DB_ALIAS, shard: Shard | None = None) -> Iterator[None]:
    """Hold the runner lock, or raise `BackfillError` at once.

    An unsharded run holds the backfill lock exclusively: it refuses while any run or shard runs. A
    shard holds it shared (shards run together, an unsharded run refuses) plus its own shard lock
    exclusively (two runs of the same shard refuse).
    """
    connection = connections[using]
    refused = BACKFILL_ALREADY_RUNNING if shard is None else BACKFILL_SHARD_ALREADY_RUNNING.format(shard=shard.label)
    if connection.vendor == "postgresql":
        held: list[str] = []
        try:
            with connection.cursor() as cursor:
                if shard is None:
                    steps = [("pg_try_advisory_lock", "pg_advisory_unlock", ADVISORY_LOCK_KEY)]
                else:
                    steps = [
                        ("pg_try_advisory_lock_shared", "pg_advisory_unlock_shared", ADVISORY_LOCK_KEY),
                        ("pg_try_advisory_lock", "pg_advisory_unlock", shard.lock_key),
                    ]
                for take, release, key in steps:
                    cursor.execute(f"SELECT {take}(%s)", [key])
                    if not cursor.fetchone()[0]:
                        raise BackfillError(refused)
                    held.append(f"SELECT {release}({key})")
            yield
        finally:
            with connection.cursor() as cursor:
                for statement in reversed(held):
                    cursor.execute(statement)
        return
    locks = [(_sqlite_lock_path(connection), fcntl.LOCK_EX if shard is None else fcntl.LOCK_SH)]
    if shard is not None:
        locks.append((_sqlite_lock_path(connection, shard=shard), fcntl.LOCK_EX))
    files = []
    try:
        for path, mode in locks:
            lock_file = open(path, "a")
            files.append(lock_file)
            try:
                fcntl.flock(lock_file, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackfillError(refused) from None
        yield
    finally:
        for lock_file in reversed(files):
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
