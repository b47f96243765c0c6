from django.urls import re_path

from apps.telemetry.api import teltonika, usage, views

urlpatterns = [
    re_path(r"^ingest/http/?$", views.HttpIngestView.as_view(), name="ingest-http"),
    re_path(
        r"^ingest/teltonika/ping/?$", teltonika.TeltonikaPingView.as_view(), name="teltonika-ping"
    ),
    re_path(
        r"^ingest/teltonika/ingest/?$",
        teltonika.TeltonikaIngestView.as_view(),
        name="teltonika-ingest",
    ),
    re_path(r"^telemetry/query/?$", views.TelemetryQueryView.as_view(), name="telemetry-query"),
    re_path(r"^telemetry/latest/?$", views.LatestStateView.as_view(), name="telemetry-latest"),
    re_path(
        r"^tenants/(?P<tenant_id>\d+)/limits/?$",
        usage.TenantLimitsView.as_view(),
        name="tenant-limits",
    ),
]
