from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import health
from config.api import ThrottleFirstMixin


class SchemaView(ThrottleFirstMixin, SpectacularAPIView):
    """The OpenAPI schema, for token holders only (SPECTACULAR_SETTINGS SERVE_PERMISSIONS), throttled."""


urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/billing/", include("billing.api.urls")),
    path("api/", include("payments.api.urls")),
]

# Under /api/ these answer JSON (config.api); elsewhere Django's own pages.
handler400 = "config.api.bad_request"
handler403 = "config.api.permission_denied"
handler404 = "config.api.not_found"
handler500 = "config.api.server_error"
