"""Errors of the payment operations and their messages (tests assert on these constants).

The HTTP API maps them: `NotFound` → 404, `InvalidInput` → 400, `RuleViolation` and
`IdempotencyConflict` → 409.
"""
from payments.domain.amounts import (  # noqa: F401 - the amount rule's messages, raised as InvalidInput
    ERROR_AMOUNT_NOT_INTEGER,
    ERROR_AMOUNT_NOT_POSITIVE,
    ERROR_AMOUNT_TOO_LARGE,
)

# NotFound: never says whether the id exists in another tenant.
ERROR_PAYMENT_NOT_FOUND = "payment {id} not found"
ERROR_INVOICE_NOT_FOUND = "invoice {id} not found"
ERROR_CREDIT_NOT_FOUND = "credit {id} not found"
ERROR_ALLOCATION_NOT_FOUND = "allocation {id} not found"

# InvalidInput
ERROR_CURRENCY_MISMATCH_TENANT = "currency {currency!r} is not the tenant's currency {expected!r}"
ERROR_CHANNEL_INVALID = "channel must be one of {choices}"
ERROR_VERIFICATION_STATUS_INVALID = "a payment is recorded as PENDING or VERIFIED"
ERROR_REASON_REQUIRED = "a reason is required"
ERROR_RECEIVED_IN_FUTURE = "receivedAt must not be in the future (more than {seconds} seconds ahead of the server's clock)"
ERROR_RECEIVED_BEFORE_FLOOR = "receivedAt must not be before {floor}"
ERROR_IDEMPOTENCY_KEY_RESERVED = "idempotency keys starting {prefix!r} are reserved for the PAY-10 backfill"

# RuleViolation: the message names the rule the request would break.
ERROR_INVOICE_NOT_PAYABLE = "invoice {id} is {status}: money is not applied to DRAFT or VOID invoices"
ERROR_INVOICE_OVER_APPLIED = (
    "invoice {id} has a balance of {balance} cents (pending money counts against it); {amount} would over-apply it"
)
ERROR_PAYMENT_OVER_ALLOCATED = "payment {id} has {unallocated} unallocated cents; {amount} would over-allocate it"
ERROR_CREDIT_OVER_SPENT = "credit {id} has {remaining} cents left; {amount} would over-spend it"
ERROR_PAYMENT_REJECTED = "payment {id} is REJECTED: its money cannot be allocated, credited or refunded"
ERROR_PAYMENT_NOT_VERIFIED = "payment {id} is {status}: only VERIFIED money becomes credit or is refunded"
ERROR_VERIFY_REJECTED = "payment {id} is REJECTED and cannot be verified"
ERROR_REJECT_REFUNDED = "payment {id} cannot be rejected: money from it was refunded"
ERROR_REJECT_CREDIT_APPLIED = "payment {id} cannot be rejected: its credit {credit} has been applied to invoices"
ERROR_CREDIT_OF_REJECTED_PAYMENT = "credit {id} came from rejected payment {payment}: it holds no money"
ERROR_TENANT_MISMATCH = "payment/credit and invoice belong to different tenants"
ERROR_CURRENCY_MISMATCH = "currency {source!r} of the money differs from the invoice's currency {invoice!r}"
ERROR_REFUND_EXCEEDS = "payment {id} has {refundable} cents that can still be refunded; {amount} is more"

# IdempotencyConflict
ERROR_IDEMPOTENCY_CONFLICT = "idempotency key {key!r} was already used for a different request"


class PaymentOperationError(Exception):
    """Base of every refusal of a payment operation; `str(error)` is the message for people."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(PaymentOperationError):
    pass


class RuleViolation(PaymentOperationError):
    pass


class IdempotencyConflict(PaymentOperationError):
    pass


class InvalidInput(PaymentOperationError):
    pass
