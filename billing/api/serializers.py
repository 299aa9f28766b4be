"""Query parameters and response documents of the finance API (FIN-01, FIN-02).

The query serializers are the one place the parameters are validated (the finance dashboard in
the admin reuses FIN-01's), so a bad value is a 400 with a message under the parameter's own name.
The response serializers only describe the documents `billing.selectors.finance` builds, for the
OpenAPI schema; the views return the selectors' documents unchanged.
"""
from datetime import date

from rest_framework import serializers

from billing.models import InvoiceStatus
from billing.selectors.finance import AGING_BUCKETS, FIN02_MAX_PAGE_SIZE, Period
from payments.domain import status as engine

FIN02_DEFAULT_PAGE_SIZE = 50
# Keeps the row offset within a 64-bit integer, which both databases need.
FIN02_MAX_PAGE = 10**9

ERROR_RANGE_NEEDS_CUSTOM_PERIOD = "from/to choose a custom period: leave period out or set it to CUSTOM"
ERROR_CUSTOM_PERIOD_NEEDS_RANGE = "period CUSTOM needs from, to or both"
ERROR_RANGE_REVERSED = "from must not be after to"
# Dates a period may name: far enough for any book, near enough that every zone's midnight of the
# day after still fits in a datetime.
FINANCE_MIN_DATE = date(1900, 1, 1)
FINANCE_MAX_DATE = date(2999, 12, 31)
ERROR_DATE_OUT_OF_RANGE = f"a date between {FINANCE_MIN_DATE.isoformat()} and {FINANCE_MAX_DATE.isoformat()} is required"


class _TenantParameterMixin(serializers.Serializer):
    tenant = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Tenant slug, e.g. rcme-dev. Staff may name any tenant; a tenant user only its own.",
    )


class FinanceSummaryQuerySerializer(_TenantParameterMixin):
    """FIN-01 parameters. `from`/`to` (inclusive dates) select a custom period; so does period=CUSTOM."""

    period = serializers.ChoiceField(
        choices=[*Period.NAMED, Period.CUSTOM],
        required=False,
        help_text="Default ALL_TIME, or CUSTOM when from/to are given.",
    )
    date_from = serializers.DateField(
        required=False,
        help_text=f"First day of a custom period (YYYY-MM-DD), {FINANCE_MIN_DATE} to {FINANCE_MAX_DATE}.",
    )
    date_to = serializers.DateField(
        required=False,
        help_text=f"Last day of a custom period (YYYY-MM-DD), inclusive, {FINANCE_MIN_DATE} to {FINANCE_MAX_DATE}.",
    )

    @staticmethod
    def _date_in_range(value: date) -> date:
        if not FINANCE_MIN_DATE <= value <= FINANCE_MAX_DATE:
            raise serializers.ValidationError(ERROR_DATE_OUT_OF_RANGE)
        return value

    def validate_from(self, value: date) -> date:  # the public name of date_from
        return self._date_in_range(value)

    def validate_to(self, value: date) -> date:  # the public name of date_to
        return self._date_in_range(value)

    # `from` is a Python keyword, so the two date fields take their public names here.
    PUBLIC_NAMES = {"date_from": "from", "date_to": "to"}

    def get_fields(self):
        fields = super().get_fields()
        for internal, public in self.PUBLIC_NAMES.items():
            field = fields.pop(internal)
            field.source = internal
            fields[public] = field
        return fields

    def validate(self, attrs):
        date_from, date_to = attrs.get("date_from"), attrs.get("date_to")
        has_range = date_from is not None or date_to is not None
        period = attrs.get("period")
        if period is None:
            period = Period.CUSTOM if has_range else Period.ALL_TIME
        if has_range and period != Period.CUSTOM:
            raise serializers.ValidationError({"period": [ERROR_RANGE_NEEDS_CUSTOM_PERIOD]})
        if period == Period.CUSTOM and not has_range:
            raise serializers.ValidationError({"period": [ERROR_CUSTOM_PERIOD_NEEDS_RANGE]})
        if date_from is not None and date_to is not None and date_from > date_to:
            raise serializers.ValidationError({"from": [ERROR_RANGE_REVERSED]})
        attrs["period"] = period
        return attrs


class InvoicePageQuerySerializer(_TenantParameterMixin):
    page = serializers.IntegerField(
        required=False, default=1, min_value=1, max_value=FIN02_MAX_PAGE, help_text="1-based; past the end is empty."
    )
    pageSize = serializers.IntegerField(  # noqa: N815 - the API's camelCase name
        required=False, default=FIN02_DEFAULT_PAGE_SIZE, min_value=1, max_value=FIN02_MAX_PAGE_SIZE
    )
    status = serializers.ChoiceField(
        choices=InvoiceStatus.values, required=False, help_text="Today's status (the engine's verdict), not a stored one."
    )


class _StatusFiguresSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    amountCents = serializers.IntegerField()  # noqa: N815


class CurrencySummarySerializer(serializers.Serializer):
    invoicedCents = serializers.IntegerField(help_text="Issued invoices (DRAFT, VOID excluded), by issue date.")  # noqa: N815
    collectedCents = serializers.IntegerField(help_text="Verified money and credit applied to them.")  # noqa: N815
    outstandingCents = serializers.IntegerField(help_text="invoiced - collected.")  # noqa: N815
    overdueCents = serializers.IntegerField(help_text="Outstanding of invoices OVERDUE today.")  # noqa: N815
    pendingVerificationCents = serializers.IntegerField(  # noqa: N815
        help_text="Payments awaiting verification, by the payment's received_at."
    )
    unappliedCreditCents = serializers.IntegerField(help_text="What credits hold now, whatever the period.")  # noqa: N815
    byStatus = serializers.DictField(  # noqa: N815
        child=_StatusFiguresSerializer(), help_text=f"Keys: {', '.join(engine.ALL_STATUSES)} (today's status)."
    )
    aging = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=f"Outstanding by days past due; keys {', '.join(AGING_BUCKETS)}; adds up to outstandingCents.",
    )


class FinanceSummarySerializer(serializers.Serializer):
    period = serializers.CharField()
    # `from` and `to` are added under their public names below (Python keywords).
    tenant = serializers.CharField(allow_null=True, help_text="null: every tenant.")
    asOf = serializers.DateField(help_text="The day 'today' was for statuses and aging.")  # noqa: N815
    currencies = serializers.DictField(child=CurrencySummarySerializer(), help_text="Keyed by ISO 4217 code.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(allow_null=True, help_text="First day of the period; null: open.")
        fields["to"] = serializers.DateField(allow_null=True, help_text="Last day of the period; null: open.")
        return fields


class InvoiceRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=InvoiceStatus.values, help_text="The engine's verdict for today.")
    amountCents = serializers.IntegerField()  # noqa: N815
    paidCents = serializers.IntegerField()  # noqa: N815
    pendingCents = serializers.IntegerField()  # noqa: N815
    balanceCents = serializers.IntegerField(help_text="amount - paid - pending.")  # noqa: N815
    currency = serializers.CharField()
    issuedAt = serializers.DateTimeField(allow_null=True)  # noqa: N815
    dueDate = serializers.DateField(allow_null=True)  # noqa: N815
    paidAt = serializers.DateTimeField(allow_null=True)  # noqa: N815


class InvoicePageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Invoices matching, over all pages.")
    page = serializers.IntegerField()
    pageSize = serializers.IntegerField()  # noqa: N815
    results = InvoiceRowSerializer(many=True, help_text="Newest first.")
