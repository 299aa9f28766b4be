"""Checks of a request's values before any row is read: a refusal is `InvalidInput`, nothing changed.
The rules themselves are domain rules (`payments.domain.amounts`); this is their service face."""
from payments.domain.amounts import MAX_AMOUNT_CENTS, amount_error
from payments.services import errors

MAX_TEXT_LENGTH = 255
ERROR_TEXT_TOO_LONG = "{field} must be at most {max} characters"
ERROR_TEXT_NOT_STRING = "{field} must be text"


def amount_validate(amount_cents, *, max_cents: int = MAX_AMOUNT_CENTS) -> int:
    """A positive integer number of cents, no larger than `max_cents`."""
    problem = amount_error(amount_cents, max_cents=max_cents)
    if problem is not None:
        raise errors.InvalidInput(problem)
    return amount_cents


def text_validate(value, *, field: str) -> str:
    """Text of at most `MAX_TEXT_LENGTH` characters."""
    if not isinstance(value, str):
        raise errors.InvalidInput(ERROR_TEXT_NOT_STRING.format(field=field))
    if len(value) > MAX_TEXT_LENGTH:
        raise errors.InvalidInput(ERROR_TEXT_TOO_LONG.format(field=field, max=MAX_TEXT_LENGTH))
    return value


def reason_required(reason) -> str:
    """A non-blank reason, stripped."""
    if not isinstance(reason, str) or not reason.strip():
        raise errors.InvalidInput(errors.ERROR_REASON_REQUIRED)
    return reason.strip()
