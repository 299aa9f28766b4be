"""What every API endpoint shares: token authentication, error bodies, throttles, body limits and
the error answers the OpenAPI schema documents for every operation.

- `ExpiringTokenAuthentication`: knox's bearer tokens, but a token without an expiry is refused
  (none is minted any more, see `billing.services.api_tokens`), and the token's key is kept on the
  user for the audit trail (`payments.services.audit`).
- `exception_handler`: DRF's, with `code` beside `detail` in every non-field error body, so every
  4xx answer is `{"detail", "code"}` or, for a 400, `{"<field>": ["<message>", ...]}`.
- `TokenRateThrottle` / `AddressRateThrottle`: per token and per client address (callers without a
  valid token), rates from the settings at each request (`API_THROTTLE_TOKEN_RATE`,
  `API_THROTTLE_ANON_RATE`); `ThrottleFirstMixin` (on every API view) checks them before the
  permissions, so a 401 is throttled too.
- `ApiEdgeMiddleware` and the `handler*` views: unknown paths under /api/, bodies over
  `DATA_UPLOAD_MAX_MEMORY_SIZE` and server errors answer JSON there, not Django's HTML pages.
"""
import binascii

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.throttling import SimpleRateThrottle

API_PREFIX = "/api/"
ERROR_INVALID_TOKEN = "Invalid token."  # the same answer for an undecodable token and one without expiry
ERROR_BODY_TOO_LARGE = "the request body is over {limit} bytes"
ERROR_BAD_CONTENT_LENGTH = "the Content-Length header is not a number of bytes"
ERROR_NO_SUCH_PATH = "no API endpoint at {path}"
ERROR_BAD_REQUEST = "bad request"
ERROR_SERVER = "server error; the request id in X-Request-ID names it in the logs"

# The attribute of a request's user naming the token it came with (read by the audit trail).
TOKEN_KEY_ATTRIBUTE = "api_token_key"


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
            user, auth_token = super().authenticate_credentials(token)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            raise exceptions.AuthenticationFailed(ERROR_INVALID_TOKEN) from None
        if auth_token.expiry is None:
            raise exceptions.AuthenticationFailed(ERROR_INVALID_TOKEN)
        setattr(user, TOKEN_KEY_ATTRIBUTE, auth_token.token_key)
        return user, auth_token


def exception_handler(exc, context):
    from rest_framework.views import exception_handler as drf_exception_handler  # DRF's settings import this module

    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data = {"detail": response.data["detail"], "code": codes if isinstance(codes, str) else "error"}
    return response


class _SettingsRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is read from the settings at each request (tests and operators change it)."""

    setting = ""

    def __init__(self):
        pass  # the rate is read in allow_request

    def allow_request(self, request, view):
        self.rate = getattr(settings, self.setting)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class TokenRateThrottle(_SettingsRateThrottle):
    scope = "token"
    setting = "API_THROTTLE_TOKEN_RATE"

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        if token is None or not getattr(token, "token_key", None):
            return None  # anonymous: AddressRateThrottle's
        return self.cache_format % {"scope": self.scope, "ident": token.token_key}


class AddressRateThrottle(_SettingsRateThrottle):
    scope = "address"
    setting = "API_THROTTLE_ANON_RATE"

    def get_cache_key(self, request, view):
        if getattr(request, "auth", None) is not None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ThrottleFirstMixin:
    """For API views: an undocumented method is a 405 before anything else; throttles run before
    permissions, so that a caller without a valid token (none, a wrong one, an expired one) is
    throttled per address before it is told 401 — token guessing is throttled too. A failed
    authentication is kept and raised after the throttles."""

    def initial(self, request, *args, **kwargs):
        method = request.method.lower()
        undocumented = method == "options" and self.metadata_class is None
        if undocumented or method not in self.http_method_names or not hasattr(self, method):
            raise exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request):
        try:
            request.user  # noqa: B018 - authenticates
        except exceptions.AuthenticationFailed as failed:
            request.pay10_authentication_failed = failed

    def check_permissions(self, request):
        self.check_throttles(request)
        failed = getattr(request, "pay10_authentication_failed", None)
        if failed is not None:
            raise failed
        super().check_permissions(request)

    def check_throttles(self, request):
        if getattr(request, "pay10_throttles_checked", False):
            return  # once per request (DRF's initial() would check them again)
        request.pay10_throttles_checked = True
        super().check_throttles(request)


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _error(detail: str, code: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


class ApiEdgeMiddleware:
    """Under /api/: a body over the limit is a 413 before anything reads it (DRF's parsers read the
    stream themselves, past Django's own check), a malformed Content-Length a 400, and an HTML error
    page Django answered itself (no such path, a bad request) becomes a JSON error body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not _is_api(request):
            return self.get_response(request)
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return _error(ERROR_BAD_CONTENT_LENGTH, "bad_content_length", 400)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return _error(ERROR_BODY_TOO_LARGE.format(limit=limit), "too_large", 413)
        response = self.get_response(request)
        if response.status_code in HTML_REPLACED and not response.get("Content-Type", "").startswith("application/json"):
            detail, code = HTML_REPLACED[response.status_code]
            return _error(detail.format(path=request.path), code, response.status_code)
        return response


HTML_REPLACED = {
    400: (ERROR_BAD_REQUEST, "bad_request"),
    403: ("permission denied", "permission_denied"),
    404: (ERROR_NO_SUCH_PATH, "not_found"),
    413: (ERROR_BAD_REQUEST, "too_large"),
}


def not_found(request, exception=None):
    if _is_api(request):
        return _error(ERROR_NO_SUCH_PATH.format(path=request.path), "not_found", 404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _is_api(request):
        return _error(ERROR_BAD_REQUEST, "bad_request", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _error("permission denied", "permission_denied", 403)
    return defaults.permission_denied(request, exception)


def server_error(request):
    if _is_api(request):
        return _error(ERROR_SERVER, "server_error", 500)
    return defaults.server_error(request)


# --------------------------------------------------------------------------------------------
# OpenAPI: the error answers every operation may give, documented once here.

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail", "code"],
}
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "description": "Each bad field or parameter with its messages.",
}
COMMON_ERRORS = {
    "400": ("A malformed body or parameter; the body names each bad field.", {"oneOf": [FIELD_ERRORS_SCHEMA, ERROR_SCHEMA]}),
    "401": ("No valid token (`Authorization: Bearer <token>`).", ERROR_SCHEMA),
    "403": ("The token may not do this (staff only, a named permission, another tenant).", ERROR_SCHEMA),
    "404": ("Unknown id or tenant, another tenant's id, or no such path.", ERROR_SCHEMA),
    "405": ("The path takes another method.", ERROR_SCHEMA),
    "406": ("The Accept header asks for something other than JSON.", ERROR_SCHEMA),
    "413": ("The request body is over the limit (`DJANGO_MAX_BODY_BYTES`).", ERROR_SCHEMA),
    "415": ("The body is not JSON.", ERROR_SCHEMA),
    "429": ("Throttled: too many requests for this token or address; retry after `Retry-After` seconds.", ERROR_SCHEMA),
}
BODYLESS_METHODS = {"get", "head", "delete"}


def document_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents the common error answers,
    all `application/json` (what an operation documents itself is kept as it is)."""
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, (description, schema) in COMMON_ERRORS.items():
                if status in ("413", "415") and method in BODYLESS_METHODS:
                    continue
                response = responses.setdefault(status, {"description": description})
                content = response.setdefault("content", {})
                if not content:
                    content["application/json"] = {"schema": schema}
    return result


class ExpiringTokenScheme(OpenApiAuthenticationExtension):
    """Documents the bearer token in the OpenAPI schema (drf-spectacular knows knox's own class only)."""

    target_class = ExpiringTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `manage.py create_api_token`: `Authorization: Bearer <token>`.",
        }
