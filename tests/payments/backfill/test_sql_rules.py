"""Twin tests: the backfill's rules as the SQL planner renders them (`sql_rules`, PostgreSQL) give
the Python planner's answers (`payments.domain.channels`, `payments.domain.backfill`) over generated
values: channel and verification mapping, the leftover credit's reason and kind, the legacy
inconsistencies, the deviation texts."""
import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.domain import backfill as plan_rules
from payments.domain import status as engine
from payments.domain.backfill import LegacyInvoice
from payments.domain.channels import LEGACY_VERIFICATION, METHOD_CHANNELS, channel_for_method, verification_status_for
from payments.services.backfill import sql_rules

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TWIN = settings(max_examples=60, deadline=None)

# Methods: the table's spellings and legacy_seed's, mangled with case, separators and spaces (ASCII:
# the legacy column's free text as the old service stored it).
METHOD_PARTS = sorted({*METHOD_CHANNELS, "crypto", "paypal", "bank transfer", "mobile money", "m-pesa"})
methods = st.one_of(
    st.lists(st.one_of(st.sampled_from(METHOD_PARTS), st.sampled_from(["-", "_", " ", "\t", "  ", "-_ "])),
             max_size=4).map("".join).map(lambda text: "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(text))),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_ \t\n", max_size=12),
)
statuses = st.sampled_from(engine.ALL_STATUSES)
cents = st.integers(-5, 10_000)
numbers = st.text(alphabet="INV-0123456789'", min_size=1, max_size=10)


def _sql(expression: str, params: dict):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", params)
        return cursor.fetchone()[0]


@TWIN
@given(method=methods)
def test_channel_for_method_twins(method):
    assert _sql(sql_rules.channel_for_method("%(m)s::text"), {"m": method}) == channel_for_method(method)


@pytest.mark.parametrize("status", sorted(LEGACY_VERIFICATION))
def test_verification_status_twins(status):
    assert _sql(sql_rules.verification_status_for("%(s)s::text"), {"s": status}) == verification_status_for(status)


@TWIN
@given(status=statuses, legacy_paid=st.integers(0, 3), number=numbers)
def test_leftover_reason_and_kind_twin(status, legacy_paid, number):
    invoice = LegacyInvoice(1, "t", number, "KES", status, 0, 0, None, None, None, None)
    reason, kind = plan_rules._leftover_case(invoice, legacy_paid)
    params = {"s": status, "p": legacy_paid, "n": number}
    assert _sql(sql_rules.leftover_reason("%(s)s::text", "%(p)s::bigint", "%(n)s::text"), params) == reason.format(
        number=number
    )
    assert _sql(sql_rules.leftover_kind("%(s)s::text", "%(p)s::bigint"), params) == kind


@TWIN
@given(status=statuses, amount=cents, paid=cents)
def test_legacy_inconsistencies_twin(status, amount, paid):
    invoice = LegacyInvoice(1, "t", "n", "KES", status, amount, paid, None, None, None, None)
    problems = plan_rules.legacy_inconsistencies(invoice)
    expected = plan_rules.PROBLEMS_SEPARATOR.join(problems) if problems else None
    rendered = sql_rules.legacy_inconsistencies("%(s)s::text", "%(a)s::bigint", "%(p)s::bigint")
    assert _sql(rendered, {"s": status, "a": amount, "p": paid}) == expected


@TWIN
@given(currency=st.text(alphabet="ABCXYZ'", min_size=1, max_size=3), expected=st.sampled_from(["KES", "USD"]))
def test_text_templates_twin(currency, expected):
    rendered = sql_rules.currency_mismatch_detail("%(c)s::text", "%(e)s::text")
    assert _sql(rendered, {"c": currency, "e": expected}) == plan_rules.DETAIL_CURRENCY_MISMATCH.format(
        currency=currency, expected=expected
    )
    assert _sql(sql_rules.text_format(plan_rules.REASON_UNLINKED), {}) == plan_rules.REASON_UNLINKED
