"""One log line per request on `pay10.request`: request id, method, path, status, duration, user and
tenant (second in MIDDLEWARE, inside `config.request_context`, so the line carries the request id).

The tenant is the one the API resolved for the request (`note_tenant`, called by
`billing.api.access.tenant_for_request`): a tenant token's own, or the tenant a staff caller named;
None when the request named none. Health probes are not logged (the load balancer calls them every
few seconds; gunicorn's access log still has them).
"""
import logging
import time

logger = logging.getLogger("pay10.request")

UNLOGGED_PATHS = frozenset({"/healthz", "/readyz"})


def note_tenant(request, tenant_id: str) -> None:
    """Record the tenant a request acts for, for its log line (a DRF request or a Django one)."""
    getattr(request, "_request", request).pay10_tenant_id = tenant_id


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path in UNLOGGED_PATHS:
            return response
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        user = getattr(request, "user", None)
        logger.info(
            "%s %s %s %sms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "request_id": getattr(request, "request_id", None),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "user": user.get_username() if user is not None and user.is_authenticated else None,
                "tenant": getattr(request, "pay10_tenant_id", None),
            },
        )
        return response
