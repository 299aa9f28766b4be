"""How a legacy payment row maps onto PAY-10's fields (SPEC.md "Backfill rules").

`method` was free text in the old code; it is read after trimming, lower-casing and treating `-`,
space and `_` alike. Pure functions, no ORM: the backfill planner and its tests use them directly.
"""
import re

CARD = "CARD"
BANK_TRANSFER = "BANK_TRANSFER"
CASH = "CASH"
MOBILE_MONEY = "MOBILE_MONEY"
CHEQUE = "CHEQUE"
OTHER = "OTHER"
LEGACY = "LEGACY"
CHANNELS = (CARD, BANK_TRANSFER, CASH, MOBILE_MONEY, CHEQUE, OTHER, LEGACY)

# Normalised method spelling -> channel; anything not listed is OTHER.
METHOD_CHANNELS: dict[str, str] = {
    "card": CARD,
    "bank": BANK_TRANSFER,
    "bank_transfer": BANK_TRANSFER,
    "transfer": BANK_TRANSFER,
    "wire": BANK_TRANSFER,
    "cash": CASH,
    "mpesa": MOBILE_MONEY,
    "mobile": MOBILE_MONEY,
    "mobile_money": MOBILE_MONEY,
    "cheque": CHEQUE,
    "check": CHEQUE,
}

# Legacy payment status -> verification status.
LEGACY_VERIFICATION: dict[str, str] = {
    "SUCCEEDED": "VERIFIED",
    "PENDING": "PENDING",
    "FAILED": "REJECTED",
    "REFUNDED": "REJECTED",
}

_SEPARATORS = re.compile(r"[-_\s]+")


def normalise_method(method: str | None) -> str:
    """`' Bank-Transfer '` -> `'bank_transfer'`: trimmed, lower-cased, separators as one `_`."""
    return _SEPARATORS.sub("_", (method or "").strip().lower()).strip("_")


def channel_for_method(method: str | None) -> str:
    return METHOD_CHANNELS.get(normalise_method(method), OTHER)


def verification_status_for(legacy_status: str) -> str:
    try:
        return LEGACY_VERIFICATION[legacy_status]
    except KeyError:
        raise ValueError(f"unknown legacy payment status {legacy_status!r}") from None
