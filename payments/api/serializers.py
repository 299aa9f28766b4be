"""Request and response bodies of the payment operations API (camelCase JSON).

Requests are validated strictly so that no input reaches the services malformed: integers must be
JSON integers (not strings, floats or booleans) within range, text has a length limit, dates are
ISO 8601. Responses are read from `payments.selectors.balances`.
"""
from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import build_basic_type
from drf_spectacular.types import OpenApiTypes
from rest_framework import serializers

from payments.domain.amounts import MAX_AMOUNT_CENTS
from payments.models import Allocation, Payment
from payments.services import errors
from payments.services.inputs import MAX_TEXT_LENGTH
from payments.services.payments import (
    RECORDABLE_CHANNELS,
    RECORDABLE_VERIFICATION_STATUSES,
    received_at_validate,
)

MAX_ID = 2**63 - 1
ERROR_NOT_AN_INTEGER = "A JSON integer is required (not a string, a decimal number or a boolean)."


class StrictIntegerField(serializers.Field):
    """A JSON integer between `min_value` and `max_value`; "12", 12.0 and true are refused."""

    default_error_messages = {
        "invalid": ERROR_NOT_AN_INTEGER,
        "min_value": "Ensure this value is greater than or equal to {min_value}.",
        "max_value": "Ensure this value is less than or equal to {max_value}.",
    }

    def __init__(self, *, min_value: int = 1, max_value: int = MAX_AMOUNT_CENTS, **kwargs):
        self.min_value = min_value
        self.max_value = max_value
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        if data < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        if data > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        return data

    def to_representation(self, value) -> int:
        return int(value)


class StrictCharField(serializers.CharField):
    """Text that was a JSON string (DRF's CharField would turn 5 or true into text). Surrounding
    blanks are trimmed; where blank text is refused, the schema says so with a pattern."""

    def to_internal_value(self, data) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def amount_field(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(min_value=1, max_value=MAX_AMOUNT_CENTS, **kwargs)


def id_field(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(min_value=1, max_value=MAX_ID, **kwargs)


class StrictCharFieldExtension(OpenApiSerializerFieldExtension):
    """A StrictCharField is a string with its length bounds; one that refuses blank text has a
    non-blank character."""

    target_class = StrictCharField

    def map_serializer_field(self, auto_schema, direction):
        schema = build_basic_type(OpenApiTypes.STR)
        if self.target.max_length is not None:
            schema["maxLength"] = self.target.max_length
        if self.target.min_length is not None:
            schema["minLength"] = self.target.min_length
        if not self.target.allow_blank:
            schema["minLength"] = max(schema.get("minLength", 1), 1)
            schema["pattern"] = r"\S"
        return schema


class StrictIntegerFieldExtension(OpenApiSerializerFieldExtension):
    """Tells drf-spectacular that a StrictIntegerField is a bounded integer."""

    target_class = StrictIntegerField

    def map_serializer_field(self, auto_schema, direction):
        schema = build_basic_type(OpenApiTypes.INT64)
        schema.update({"minimum": self.target.min_value, "maximum": self.target.max_value})
        return schema


class PaymentRecordRequestSerializer(serializers.Serializer):
    tenant = StrictCharField(required=False, max_length=64, help_text="Staff only: the tenant the payment is for.")
    amountCents = amount_field()
    currency = StrictCharField(min_length=3, max_length=3, help_text="Must be the tenant's currency.")
    channel = serializers.ChoiceField(choices=list(RECORDABLE_CHANNELS))
    reference = StrictCharField(required=False, allow_blank=True, max_length=MAX_TEXT_LENGTH, default="")
    receivedAt = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601; defaults to now. Not in the future (beyond a small clock skew), not before the floor "
        "(PAY10_RECEIVED_AT_FLOOR).",
    )
    verificationStatus = serializers.ChoiceField(
        choices=list(RECORDABLE_VERIFICATION_STATUSES),
        required=False,
        help_text="Staff only (card or cash at the desk is recorded VERIFIED); a tenant's payment starts PENDING.",
    )

    def get_fields(self):
        fields = super().get_fields()
        # The largest payment is a setting (PAY10_MAX_PAYMENT_CENTS), read when the serializer is used.
        fields["amountCents"] = StrictIntegerField(min_value=1, max_value=settings.PAY10_MAX_PAYMENT_CENTS)
        return fields

    def validate_receivedAt(self, value):  # noqa: N802 - the API's key
        try:
            return received_at_validate(value)
        except errors.InvalidInput as error:
            raise serializers.ValidationError(error.message) from None


class ReasonRequestSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=MAX_TEXT_LENGTH, help_text="Why; kept in the audit trail.")


class AllocationRequestSerializer(serializers.Serializer):
    invoiceId = id_field()
    amountCents = amount_field()


class RefundRequestSerializer(serializers.Serializer):
    amountCents = amount_field()
    reason = StrictCharField(required=False, allow_blank=True, max_length=MAX_TEXT_LENGTH, default="")


class AllocationSerializer(serializers.ModelSerializer):
    invoiceId = serializers.IntegerField(source="invoice_id")
    paymentId = serializers.IntegerField(source="payment_id", allow_null=True)
    creditId = serializers.IntegerField(source="credit_id", allow_null=True)
    amountCents = serializers.IntegerField(source="amount_cents")
    createdAt = serializers.DateTimeField(source="created_at")
    active = serializers.SerializerMethodField()
    reversedAt = serializers.SerializerMethodField()
    reversalReason = serializers.SerializerMethodField()

    class Meta:
        model = Allocation
        fields = ["id", "invoiceId", "paymentId", "creditId", "amountCents", "createdAt", "active", "reversedAt", "reversalReason"]

    @staticmethod
    def _reversal(allocation: Allocation):
        return getattr(allocation, "reversal", None)

    def get_active(self, allocation: Allocation) -> bool:
        return self._reversal(allocation) is None

    def get_reversedAt(self, allocation: Allocation) -> str | None:  # noqa: N802 - the API's key
        reversal = self._reversal(allocation)
        return serializers.DateTimeField().to_representation(reversal.created_at) if reversal else None

    def get_reversalReason(self, allocation: Allocation) -> str | None:  # noqa: N802 - the API's key
        reversal = self._reversal(allocation)
        return reversal.reason if reversal else None


class PaymentSerializer(serializers.ModelSerializer):
    """A payment annotated by `payments_with_balances`, with `allocation_list` attached."""

    tenant = serializers.CharField(source="tenant_id")
    amountCents = serializers.IntegerField(source="amount_cents")
    receivedAt = serializers.DateTimeField(source="received_at")
    verificationStatus = serializers.CharField(source="verification_status", allow_null=True)
    legacyStatus = serializers.CharField(source="status", help_text="The pre-PAY-10 status column, kept mirrored.")
    idempotencyKey = serializers.CharField(source="idempotency_key", allow_null=True)
    allocatedCents = serializers.IntegerField(source="allocated_cents")
    creditedCents = serializers.IntegerField(source="credited_cents")
    refundedCents = serializers.IntegerField(
        source="refunded_cents", help_text="Refunded out of the payment's unallocated money (a term of unallocatedCents)."
    )
    refundedTotalCents = serializers.IntegerField(
        source="refunded_total_cents",
        help_text="Everything refunded of the payment: out of its unallocated money and out of its credits.",
    )
    unallocatedCents = serializers.IntegerField(source="unallocated_cents")
    allocations = AllocationSerializer(many=True, source="allocation_list")

    class Meta:
        model = Payment
        fields = [
            "id", "tenant", "amountCents", "currency", "channel", "reference", "receivedAt", "verificationStatus",
            "legacyStatus", "idempotencyKey", "allocatedCents", "creditedCents", "refundedCents", "refundedTotalCents",
            "unallocatedCents", "allocations",
        ]


class InvoiceSerializer(serializers.Serializer):
    """An invoice annotated by `invoices_with_balances`."""

    id = serializers.IntegerField()
    tenant = serializers.CharField(source="tenant_id")
    number = serializers.CharField()
    status = serializers.CharField()
    amountCents = serializers.IntegerField(source="amount_cents")
    paidCents = serializers.IntegerField(source="paid_cents")
    pendingCents = serializers.IntegerField(source="pending_cents")
    balanceCents = serializers.IntegerField(source="balance_cents")
    currency = serializers.CharField()


class RefundSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    amountCents = serializers.IntegerField(source="amount_cents")
    creditId = serializers.IntegerField(source="credit_id", allow_null=True, help_text="Set when refunded out of a credit.")
    reason = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


class AutoAllocationResultSerializer(serializers.Serializer):
    allocations = AllocationSerializer(many=True)
    payment = PaymentSerializer()


class RefundResultSerializer(serializers.Serializer):
    refunds = RefundSerializer(many=True)
    payment = PaymentSerializer()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
