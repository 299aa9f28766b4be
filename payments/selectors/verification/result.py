"""What every check returns, and the one helper that builds it (`check_result`), with the
helpers checks share to fetch their examples."""
from dataclasses import dataclass, field
from datetime import date

from django.db import connection
from django.db.models import BigIntegerField, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from billing.models import Tenant
from payments.selectors.balances import ZERO, scoped, sum_of  # noqa: F401 - the checks import them from here

MAX_EXAMPLES = 10


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    count: int
    explanation: str
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "ok": self.ok,
            "count": self.count,
            "examples": self.examples,
            "explanation": self.explanation,
        }



def check_result(
    name: str, *, count: int, ok_text: str = "", failed_text: str = "", explanation: str | None = None,
    examples: list[dict] | None = None, ok: bool | None = None, **fields,
) -> CheckResult:
    """The result of check `name` that found `count` problems. Its explanation is `ok_text` when
    nothing was found, else `failed_text`, formatted with `count` and `fields` (or `explanation` as
    given, for a check that words it itself). `ok` defaults to "nothing found" (a check that only
    reports, like the currency-mismatch one, decides its own). At most `MAX_EXAMPLES` examples."""
    if explanation is None:
        explanation = (failed_text if count else ok_text).format(count=count, **fields)
    return CheckResult(
        name=name,
        ok=count == 0 if ok is None else ok,
        count=count,
        explanation=explanation,
        examples=list(examples or [])[:MAX_EXAMPLES],
    )


def examples_of(queryset: QuerySet, *fields: str) -> list[dict]:
    return [
        {key: value.isoformat() if isinstance(value, date) else value for key, value in row.items()}
        for row in queryset.order_by("pk").values(*fields)[:MAX_EXAMPLES]
    ]


def raw_violations(sql: str, params: list, columns: tuple[str, ...]) -> tuple[int, list[dict]]:
    """(how many rows `sql` returns, the first `MAX_EXAMPLES` of them by their first column)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) violations", params)
        count = cursor.fetchone()[0]
        if not count:
            return 0, []
        cursor.execute(f"{sql} ORDER BY 1 LIMIT {MAX_EXAMPLES}", params)
        return count, [dict(zip(columns, row)) for row in cursor.fetchall()]


def tenant_sql(tenant: Tenant | None, column: str) -> tuple[str, list]:
    return (f" AND {column} = %s", [tenant.pk]) if tenant is not None else ("", [])
