"""The payment operations API (issue 4). Views check who may act, validate the body, call one
service and render the result; the rules live in `payments.services`.

Status codes: 401 without a valid token; 403 a tenant token on a staff-only action, or a staff token
without the endpoint's permission (`required_permission`, the names the admin's actions use too);
404 an unknown id or another tenant's id (never revealing it exists); 400 a malformed body, field by
field; 409 a rule the request would break (`payments.services.errors`), with a message that names it.
A staff user bound to a tenant acts on that tenant's rows only.

Every refused operation (a 4xx answer to a POST) logs one line on `pay10.payments.refused`: the
operation, status, code, detail, the ids in the path, user and tenant (the request id comes with it).
"""
import json
import logging

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status as http
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.api.access import StaffPermission, staff_permission_check, tenant_for_request, tenant_scope
from config.api import ThrottleFirstMixin
from payments.api.serializers import (
    MAX_ID,
    AllocationRequestSerializer,
    AllocationSerializer,
    AutoAllocationResultSerializer,
    ErrorSerializer,
    InvoiceSerializer,
    PaymentRecordRequestSerializer,
    PaymentSerializer,
    ReasonRequestSerializer,
    RefundRequestSerializer,
    RefundResultSerializer,
    RefundSerializer,
)
from payments.models import Allocation, VerificationStatus
from payments.selectors.balances import invoices_with_balances, payments_with_balances
from payments.services import errors
from payments.services.allocations import allocation_create, allocation_reverse, payment_auto_allocate
from payments.services.credits import credit_apply
from payments.services.inputs import MAX_TEXT_LENGTH
from payments.services.invoices import invoice_void
from payments.services.lookups import ALL_TENANTS
from payments.services.payments import (
    idempotency_key_validate,
    payment_record,
    payment_refund,
    payment_reject,
    payment_verify,
)

refusals = logging.getLogger("pay10.payments.refused")

ERROR_STAFF_TENANT_REQUIRED = "staff must name the tenant the payment is for"
ERROR_STAFF_ONLY_FIELD = "only staff may set {field}"
ERROR_IDEMPOTENCY_KEY_TOO_LONG = f"the Idempotency-Key header is at most {MAX_TEXT_LENGTH} characters"
ERROR_NOT_FOUND = "{what} {id} not found"

STATUS_OF_ERROR = {
    errors.NotFound: (http.HTTP_404_NOT_FOUND, "not_found"),
    errors.InvalidInput: (http.HTTP_400_BAD_REQUEST, "invalid"),
    errors.RuleViolation: (http.HTTP_409_CONFLICT, "rule_violation"),
    errors.IdempotencyConflict: (http.HTTP_409_CONFLICT, "idempotency_conflict"),
}

_ERRORS = {
    400: OpenApiResponse(description="Malformed body; the response names each bad field."),
    401: OpenApiResponse(description="No valid token (`Authorization: Bearer <token>`)."),
    403: OpenApiResponse(
        ErrorSerializer, description="A tenant token on a staff-only action, or staff without the endpoint's permission."
    ),
    404: OpenApiResponse(ErrorSerializer, description="Unknown id, or another tenant's."),
    409: OpenApiResponse(ErrorSerializer, description="A rule the request would break; `detail` names it."),
}


def _responses(ok: dict) -> dict:
    return {**ok, **_ERRORS}


def payment_document(payment_id: int) -> dict:
    payment = payments_with_balances().get(pk=payment_id)
    payment.allocation_list = list(Allocation.objects.filter(payment_id=payment_id).select_related("reversal").order_by("pk"))
    return PaymentSerializer(payment).data


def allocation_document(allocation_id: int) -> dict:
    return AllocationSerializer(Allocation.objects.select_related("reversal").get(pk=allocation_id)).data


class OperationView(ThrottleFirstMixin, APIView):
    """Staff holding `required_permission` by default; maps the services' refusals to status codes."""

    permission_classes = [IsAuthenticated, StaffPermission]
    required_permission = ""

    def scope(self, request: Request):
        """The tenant a staff caller is limited to, or None (every tenant)."""
        return tenant_scope(request.user)

    def operation_scope(self, request: Request):
        """`scope` as the payment operations take it: the tenant, or `ALL_TENANTS` said explicitly."""
        return self.scope(request) or ALL_TENANTS

    def handle_exception(self, exc):
        for error_class, (status_code, code) in STATUS_OF_ERROR.items():
            if isinstance(exc, error_class):
                response = Response({"detail": exc.message, "code": code}, status=status_code)
                break
        else:
            response = super().handle_exception(exc)
        if self.request.method == "POST" and 400 <= response.status_code < 500:
            self.log_refusal(exc, response)
        return response

    def log_refusal(self, exc, response: Response) -> None:
        operation = self.request.resolver_match.url_name if self.request.resolver_match else type(self).__name__
        data = response.data if isinstance(response.data, dict) else {"detail": response.data}
        detail = data.get("detail", data)
        if isinstance(detail, dict):  # a 400: the bad fields and their messages
            detail = {field: [str(message) for message in messages] for field, messages in detail.items()}
        user = getattr(self.request, "user", None)
        refusals.warning(
            "%s refused (%s): %s",
            operation,
            response.status_code,
            json.dumps(detail) if isinstance(detail, dict) else detail,
            extra={
                "operation": operation,
                "status": response.status_code,
                "code": data.get("code") or getattr(exc, "default_code", None),
                "detail": detail,
                "ids": dict(self.kwargs),
                "user": user.get_username() if user is not None and user.is_authenticated else None,
                "tenant": getattr(self.request._request, "pay10_tenant_id", None),
            },
        )

    @staticmethod
    def path_id(value: int, *, what: str) -> int:
        """An id from the path; one beyond the database's range names nothing."""
        if value > MAX_ID:
            raise NotFound(ERROR_NOT_FOUND.format(what=what, id=value))
        return value

    @staticmethod
    def body(serializer_class, request: Request) -> dict:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class PaymentCreateView(OperationView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="payment_record",
        summary="Record a payment",
        description=(
            "Money received. A tenant token records for its own tenant and its payments start PENDING; staff name "
            "the `tenant` and may record VERIFIED directly. With an `Idempotency-Key` header, a replay of the same "
            "body returns the same payment (200); the same key with another body is a 409. Keys starting "
            "`pay10-backfill:` are the backfill's and are refused (400). Staff need `payments.add_payment`."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description=f"At most {MAX_TEXT_LENGTH} characters; not starting `pay10-backfill:`.",
            )
        ],
        request=PaymentRecordRequestSerializer,
        responses=_responses({201: PaymentSerializer, 200: PaymentSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request) -> Response:
        staff_permission_check(request.user, "payments.add_payment")
        data = self.body(PaymentRecordRequestSerializer, request)
        idempotency_key = request.headers.get("Idempotency-Key") or None
        if idempotency_key is not None and len(idempotency_key) > MAX_TEXT_LENGTH:
            raise ValidationError({"Idempotency-Key": [ERROR_IDEMPOTENCY_KEY_TOO_LONG]})
        if idempotency_key is not None:
            try:
                idempotency_key_validate(idempotency_key)
            except errors.InvalidInput as error:
                raise ValidationError({"Idempotency-Key": [error.message]}) from None
        verification_status = data.get("verificationStatus", VerificationStatus.PENDING)
        if not request.user.is_staff and verification_status != VerificationStatus.PENDING:
            raise PermissionDenied(ERROR_STAFF_ONLY_FIELD.format(field="verificationStatus"))
        tenant = tenant_for_request(request, data.get("tenant"), unknown_is_field_error=True)
        if tenant is None:
            raise ValidationError({"tenant": [ERROR_STAFF_TENANT_REQUIRED]})
        if data["currency"] != tenant.currency:
            raise ValidationError(
                {"currency": [errors.ERROR_CURRENCY_MISMATCH_TENANT.format(currency=data["currency"], expected=tenant.currency)]}
            )
        payment, created = payment_record(
            tenant=tenant,
            amount_cents=data["amountCents"],
            currency=data["currency"],
            channel=data["channel"],
            reference=data["reference"],
            received_at=data.get("receivedAt"),
            verification_status=verification_status,
            idempotency_key=idempotency_key,
            actor=request.user,
        )
        return Response(payment_document(payment.pk), status=http.HTTP_201_CREATED if created else http.HTTP_200_OK)


class PaymentDetailView(OperationView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="payment_get",
        summary="A payment with its balances and allocations",
        description="A tenant token reads its own tenant's payments; staff need `payments.view_payment`.",
        responses=_responses({200: PaymentSerializer}),
        tags=["payments"],
    )
    def get(self, request: Request, payment_id: int) -> Response:
        staff_permission_check(request.user, "payments.view_payment")
        tenant = tenant_for_request(request, None)
        queryset = payments_with_balances(tenant=tenant)
        if not queryset.filter(pk=self.path_id(payment_id, what="payment")).exists():
            raise errors.NotFound(errors.ERROR_PAYMENT_NOT_FOUND.format(id=payment_id))
        return Response(payment_document(payment_id))


class PaymentVerifyView(OperationView):
    required_permission = "payments.verify_payment"

    @extend_schema(
        operation_id="payment_verify",
        summary="Verify a pending payment (staff, payments.verify_payment)",
        request=None,
        responses=_responses({200: PaymentSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: int) -> Response:
        payment = payment_verify(
            payment_id=self.path_id(payment_id, what="payment"), actor=request.user, tenant=self.operation_scope(request)
        )
        return Response(payment_document(payment.pk))


class PaymentRejectView(OperationView):
    required_permission = "payments.reject_payment"

    @extend_schema(
        operation_id="payment_reject",
        summary="Reject a payment, releasing its allocations (staff, payments.reject_payment)",
        description="Refused (409) once money from it was refunded or became credit that has since been applied.",
        request=ReasonRequestSerializer,
        responses=_responses({200: PaymentSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: int) -> Response:
        data = self.body(ReasonRequestSerializer, request)
        payment = payment_reject(
            payment_id=self.path_id(payment_id, what="payment"),
            actor=request.user,
            reason=data["reason"],
            tenant=self.operation_scope(request),
        )
        return Response(payment_document(payment.pk))


class PaymentAllocateView(OperationView):
    required_permission = "payments.allocate_payment"

    @extend_schema(
        operation_id="allocation_create",
        summary="Allocate part of a payment to an invoice (staff, payments.allocate_payment)",
        description=(
            "Never beyond the payment's unallocated money or the invoice's balance (pending money counts against "
            "it); not to DRAFT or VOID invoices; same tenant and currency only."
        ),
        request=AllocationRequestSerializer,
        responses=_responses({201: AllocationSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: int) -> Response:
        data = self.body(AllocationRequestSerializer, request)
        allocation = allocation_create(
            payment_id=self.path_id(payment_id, what="payment"),
            invoice_id=data["invoiceId"],
            amount_cents=data["amountCents"],
            actor=request.user,
            tenant=self.operation_scope(request),
        )
        return Response(allocation_document(allocation.pk), status=http.HTTP_201_CREATED)


class PaymentAutoAllocateView(OperationView):
    required_permission = "payments.allocate_payment"

    @extend_schema(
        operation_id="payment_auto_allocate",
        summary="Allocate a payment to the oldest open invoices (staff, payments.allocate_payment)",
        description=(
            "Oldest due date first, then oldest issue date, then id. What is left becomes a credit once the "
            "payment is verified; a pending payment keeps it unallocated."
        ),
        request=None,
        responses=_responses({200: AutoAllocationResultSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: int) -> Response:
        allocations = payment_auto_allocate(
            payment_id=self.path_id(payment_id, what="payment"), actor=request.user, tenant=self.operation_scope(request)
        )
        return Response(
            {
                "allocations": [allocation_document(allocation.pk) for allocation in allocations],
                "payment": payment_document(payment_id),
            }
        )


class PaymentRefundView(OperationView):
    required_permission = "payments.refund_payment"

    @extend_schema(
        operation_id="payment_refund",
        summary="Refund money of a verified payment (staff, payments.refund_payment)",
        description=(
            "From its unallocated money and its credits first, then by reversing its newest allocations (the rest "
            "of a partly needed allocation is allocated again)."
        ),
        request=RefundRequestSerializer,
        responses=_responses({200: RefundResultSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: int) -> Response:
        data = self.body(RefundRequestSerializer, request)
        refunds = payment_refund(
            payment_id=self.path_id(payment_id, what="payment"),
            amount_cents=data["amountCents"],
            reason=data["reason"],
            actor=request.user,
            tenant=self.operation_scope(request),
        )
        return Response(
            {"refunds": RefundSerializer(refunds, many=True).data, "payment": payment_document(payment_id)}
        )


class AllocationReverseView(OperationView):
    required_permission = "payments.reverse_allocation"

    @extend_schema(
        operation_id="allocation_reverse",
        summary="Reverse an allocation (staff, payments.reverse_allocation)",
        description="Its money returns to its payment or credit; the allocation stays, with its reversal recorded.",
        request=ReasonRequestSerializer,
        responses=_responses({200: AllocationSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, allocation_id: int) -> Response:
        data = self.body(ReasonRequestSerializer, request)
        reversal = allocation_reverse(
            allocation_id=self.path_id(allocation_id, what="allocation"),
            actor=request.user,
            reason=data["reason"],
            tenant=self.operation_scope(request),
        )
        return Response(allocation_document(reversal.allocation_id))


class CreditApplyView(OperationView):
    required_permission = "payments.allocate_payment"

    @extend_schema(
        operation_id="credit_apply",
        summary="Apply a credit to an invoice (staff, payments.allocate_payment)",
        request=AllocationRequestSerializer,
        responses=_responses({201: AllocationSerializer}),
        tags=["payments"],
    )
    def post(self, request: Request, credit_id: int) -> Response:
        data = self.body(AllocationRequestSerializer, request)
        allocation = credit_apply(
            credit_id=self.path_id(credit_id, what="credit"),
            invoice_id=data["invoiceId"],
            amount_cents=data["amountCents"],
            actor=request.user,
            tenant=self.operation_scope(request),
        )
        return Response(allocation_document(allocation.pk), status=http.HTTP_201_CREATED)


class InvoiceVoidView(OperationView):
    required_permission = "payments.void_invoice"

    @extend_schema(
        operation_id="invoice_void",
        summary="Void an invoice (staff, payments.void_invoice)",
        description=(
            "Verified money applied to it becomes credit of its payment, applied credit returns to its credit, "
            "pending allocations are released back to their payments."
        ),
        request=None,
        responses=_responses({200: InvoiceSerializer}),
        tags=["invoices"],
    )
    def post(self, request: Request, invoice_id: int) -> Response:
        invoice = invoice_void(
            invoice_id=self.path_id(invoice_id, what="invoice"), actor=request.user, tenant=self.operation_scope(request)
        )
        return Response(InvoiceSerializer(invoices_with_balances().get(pk=invoice.pk)).data)
