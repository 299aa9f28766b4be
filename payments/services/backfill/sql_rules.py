"""The backfill's rules as SQL expressions, rendered from their Python homes (PostgreSQL).

Each function returns an SQL expression over the column expressions it is given; the tables and
texts come from `payments.domain.channels` and `payments.domain.backfill` (their only home), the
money rules (legacy paid figure, status verdict) from `payments.database.rules`. The twin tests
(tests/payments/backfill/test_sql_rules.py) run each rendering against its Python rule over
generated values.
"""
from string import Formatter

from payments.domain import backfill as plan_rules
from payments.domain import status as engine
from payments.domain.channels import LEGACY_VERIFICATION, METHOD_CHANNELS, OTHER


def literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings: only `'` is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def text_format(template: str, **fields: str) -> str:
    """A `str.format` template (fields without format specs) as SQL: literals and the given SQL
    expressions, cast to text, concatenated."""
    parts = []
    for text, name, spec, conversion in Formatter().parse(template):
        if text:
            parts.append(literal(text))
        if name is not None:
            if spec or conversion:
                raise ValueError(f"{template!r}: only plain fields can be rendered")
            parts.append(f"({fields[name]})::text")
    return "(" + " || ".join(parts or ["''"]) + ")"


def normalised_method(method: str) -> str:
    """`channels.normalise_method`: trimmed, lower-cased, runs of `-`, `_` and whitespace as one `_`."""
    return rf"btrim(regexp_replace(lower(coalesce({method}, '')), '[-_\s]+', '_', 'g'), '_')"


def channel_for_method(method: str) -> str:
    """`channels.channel_for_method`, a CASE over `METHOD_CHANNELS`."""
    whens = " ".join(f"WHEN {literal(key)} THEN {literal(value)}" for key, value in METHOD_CHANNELS.items())
    return f"CASE {normalised_method(method)} {whens} ELSE {literal(OTHER)} END"


def verification_status_for(status: str) -> str:
    """`channels.verification_status_for`, a CASE over `LEGACY_VERIFICATION` (NULL where Python raises)."""
    whens = " ".join(f"WHEN {literal(key)} THEN {literal(value)}" for key, value in LEGACY_VERIFICATION.items())
    return f"CASE {status} {whens} END"


def leftover_reason(status: str, legacy_paid: str, number: str) -> str:
    """The credit reason of a payment's unallocated money on its invoice (`_leftover_case`'s reason)."""
    return (
        f"CASE WHEN {status} = '{engine.DRAFT}' THEN {text_format(plan_rules.REASON_DRAFT_INVOICE, number=number)}"
        f" WHEN {status} = '{engine.VOID}' THEN {text_format(plan_rules.REASON_VOID_INVOICE, number=number)}"
        f" WHEN {legacy_paid} = 0 AND {status} <> '{engine.PAID}'"
        f" THEN {text_format(plan_rules.REASON_UNPAID_INVOICE, number=number)}"
        f" ELSE {text_format(plan_rules.REASON_OVERPAYMENT, number=number)} END"
    )


def leftover_kind(status: str, legacy_paid: str) -> str:
    """The deviation kind of that credit (`_leftover_case`'s kind)."""
    unpayable = plan_rules.Deviation.UNPAYABLE_INVOICE_PAYMENT_TO_CREDIT
    return (
        f"CASE WHEN {status} IN ('{engine.DRAFT}', '{engine.VOID}')"
        f" OR ({legacy_paid} = 0 AND {status} <> '{engine.PAID}') THEN '{unpayable}'"
        f" ELSE '{plan_rules.Deviation.OVERPAYMENT_TO_CREDIT}' END"
    )


def legacy_inconsistencies(status: str, amount: str, paid: str) -> str:
    """`legacy_inconsistencies` joined as the deviation's detail; NULL when there is none."""
    explicit = ", ".join(f"'{s}'" for s in sorted(engine.EXPLICIT_STATUSES))
    f = plan_rules
    over = f"CASE WHEN {paid} > {amount} THEN {text_format(f.PROBLEM_OVER_AMOUNT, paid=paid, amount=amount)} END"
    by_status = (
        f"CASE WHEN {status} = '{engine.PAID}' THEN"
        f" CASE WHEN {paid} <> {amount} THEN {text_format(f.PROBLEM_PAID, paid=paid, amount=amount)} END"
        f" WHEN {status} = '{engine.PARTIALLY_PAID}' THEN"
        f" CASE WHEN NOT ({paid} > 0 AND {paid} < {amount})"
        f" THEN {text_format(f.PROBLEM_PARTIALLY_PAID, paid=paid, amount=amount)} END"
        f" WHEN {status} = '{engine.ISSUED}' THEN"
        f" CASE WHEN {paid} > 0 THEN {text_format(f.PROBLEM_ISSUED, paid=paid)} END"
        f" WHEN {status} IN ({explicit}) THEN"
        f" CASE WHEN {paid} > 0 THEN {text_format(f.PROBLEM_EXPLICIT, status=status, paid=paid)} END END"
    )
    return f"nullif(concat_ws({literal(f.PROBLEMS_SEPARATOR)}, {over}, {by_status}), '')"


def currency_mismatch_detail(payment_currency: str, tenant_currency: str) -> str:
    return text_format(plan_rules.DETAIL_CURRENCY_MISMATCH, currency=payment_currency, expected=tenant_currency)
