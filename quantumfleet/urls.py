"""Root URLs. API routes keep the seed's paths at the root (no /api prefix)."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.telemetry.admin_views import fleet_overview
from quantumfleet.views import HealthView, LivenessView

admin.site.site_header = "Quantum Fleet operations"
admin.site.site_title = "Quantum Fleet"
admin.site.index_title = "Fleet administration"

urlpatterns = [
    # Devices post here more often than every other route together: first to be matched.
    path("", include("apps.telemetry.api.urls")),
    path("", include("apps.dashboards.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("admin/fleet/", admin.site.admin_view(fleet_overview), name="admin-fleet"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    re_path(r"^health/live/?$", LivenessView.as_view(), name="health-live"),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.tenants.api.urls")),
    path("", include("apps.devices.api.urls")),
    path("", include("apps.connectors.api.urls")),
]

handler400 = "quantumfleet.views.bad_request"
handler404 = "quantumfleet.views.not_found"
handler500 = "quantumfleet.views.server_error"
