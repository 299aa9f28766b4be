"""Amounts of money: an integer number of cents (never a bool), positive, and bounded. Pure code.

The services turn a refusal into their `InvalidInput`; the API's serializers bound fields with
`MAX_AMOUNT_CENTS`.
"""

MAX_AMOUNT_CENTS = 10**15

ERROR_AMOUNT_NOT_INTEGER = "amount must be an integer number of cents"
ERROR_AMOUNT_NOT_POSITIVE = "amount must be greater than zero"
ERROR_AMOUNT_TOO_LARGE = "amount must be at most {max} cents"


def is_cents(value) -> bool:
    """An integer number of cents: an `int` that is not a `bool`."""
    return isinstance(value, int) and not isinstance(value, bool)


def amount_error(amount_cents, *, max_cents: int = MAX_AMOUNT_CENTS) -> str | None:
    """Why `amount_cents` is not a positive integer number of cents no larger than `max_cents`, or None."""
    if not is_cents(amount_cents):
        return ERROR_AMOUNT_NOT_INTEGER
    if amount_cents <= 0:
        return ERROR_AMOUNT_NOT_POSITIVE
    if amount_cents > max_cents:
        return ERROR_AMOUNT_TOO_LARGE.format(max=max_cents)
    return None
