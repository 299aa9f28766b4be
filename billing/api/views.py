"""The finance read API: FIN-01 (finance summary, staff only) and FIN-02 (a tenant's invoice page).

Views only check who may read what and validate the query; the documents come unchanged from
`billing.selectors.finance`.
"""
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.api.access import StaffPermission, staff_permission_check, tenant_for_request, user_tenant_id
from billing.api.serializers import (
    FinanceSummaryQuerySerializer,
    FinanceSummarySerializer,
    InvoicePageQuerySerializer,
    InvoicePageSerializer,
)
from billing.selectors.finance import finance_summary, invoice_page
from config.api import ThrottleFirstMixin

ERROR_STAFF_TENANT_REQUIRED = "staff must name a tenant (or use a token bound to one)"

_BAD_PARAMETERS = OpenApiResponse(
    description='A bad parameter; the body names it: {"pageSize": ["Ensure this value is less than or equal to 200."]}'
)
_UNAUTHENTICATED = OpenApiResponse(description="No valid token (`Authorization: Bearer <token>`).")
_UNKNOWN_TENANT = OpenApiResponse(description="The named tenant does not exist.")


def _tenant_read_responses(ok, forbidden: str) -> dict:
    """The answers of a read scoped to a tenant: its document, or why the caller may not have it."""
    return {
        200: ok,
        400: _BAD_PARAMETERS,
        401: _UNAUTHENTICATED,
        403: OpenApiResponse(description=forbidden),
        404: _UNKNOWN_TENANT,
    }


def query_data(request: Request) -> dict:
    """The query string as a plain dict, so that `period=` (empty) is a value to validate, not absence."""
    return request.query_params.dict()


class FinanceSummaryView(ThrottleFirstMixin, APIView):
    permission_classes = [IsAuthenticated, StaffPermission]
    required_permission = "payments.view_finance_summary"

    @extend_schema(
        operation_id="finance_summary",
        summary="FIN-01 finance summary",
        description=(
            "Per currency (never adding two currencies): invoiced, collected, outstanding, overdue, pending "
            "verification, unapplied credit, count and amount by status, receivables aging. Invoice figures "
            "follow the invoice's issue date (issued_at, else created_at); pending verification follows the "
            "payment's received_at; unapplied credit is what credits hold now. Staff with the permission "
            "`payments.view_finance_summary` only; without `tenant`, every tenant (a staff user bound to a tenant: "
            "that tenant only)."
        ),
        parameters=[FinanceSummaryQuerySerializer],
        responses=_tenant_read_responses(
            FinanceSummarySerializer, "The caller is not staff, lacks the permission, or is bound to another tenant."
        ),
        examples=[
            OpenApiExample(
                "A bad period",
                value={"period": ['"FOREVER" is not a valid choice.']},
                response_only=True,
                status_codes=["400"],
            )
        ],
        tags=["finance"],
    )
    def get(self, request: Request) -> Response:
        query = FinanceSummaryQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        tenant = tenant_for_request(request, params.get("tenant"))
        document = finance_summary(
            tenant=tenant,
            period=params["period"],
            date_from=params.get("date_from"),
            date_to=params.get("date_to"),
        )
        return Response(document)


@extend_schema(exclude=True)
class FinanceSummarySlashView(FinanceSummaryView):
    """The same endpoint reached with a trailing slash; left out of the schema to list it once."""


class InvoicePageView(ThrottleFirstMixin, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="tenant_invoices",
        summary="FIN-02 a tenant's invoices",
        description=(
            "One page of the caller's tenant's invoices, newest first, with paid, pending and balance, and the "
            "status the engine gives today (never a stale stored one). A tenant token reads its own tenant "
            "(naming another is 403). Staff (permission `billing.view_invoice`) name the tenant with `tenant`; "
            "a staff token bound to a tenant reads that tenant only; otherwise a missing `tenant` is 400. A page past the end has empty results."
        ),
        parameters=[InvoicePageQuerySerializer],
        responses=_tenant_read_responses(
            InvoicePageSerializer, "Another tenant's invoices, or a user that acts for no tenant."
        ),
        tags=["finance"],
    )
    def get(self, request: Request) -> Response:
        query = InvoicePageQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        staff_permission_check(request.user, "billing.view_invoice")
        requested_tenant_id = params.get("tenant")
        if requested_tenant_id is None and request.user.is_staff:
            requested_tenant_id = user_tenant_id(request.user)
            if requested_tenant_id is None:
                raise ValidationError({"tenant": [ERROR_STAFF_TENANT_REQUIRED]})
        tenant = tenant_for_request(request, requested_tenant_id)
        document = invoice_page(
            tenant=tenant, page=params["page"], page_size=params["pageSize"], status=params.get("status")
        )
        return Response(document)


@extend_schema(exclude=True)
class InvoicePageSlashView(InvoicePageView):
    """The same endpoint reached with a trailing slash; left out of the schema to list it once."""
