"""The request id every log line and audit row of one request carries.

`RequestContextMiddleware` takes the caller's `X-Request-ID` when it is a short token (a proxy or a
client tracing its own calls), else makes one, keeps it for the request's duration in a context
variable, and echoes it in the response's `X-Request-ID` header. Code outside the request/response
cycle (commands, the backfill) sees `None`.
"""
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_request_id: ContextVar[str | None] = ContextVar("pay10_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served by this thread, or None outside a request."""
    return _request_id.get()


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTED_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
