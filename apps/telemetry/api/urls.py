from django.urls import re_path

from apps.telemetry.api import views

urlpatterns = [
    re_path(r"^ingest/http/?$", views.HttpIngestView.as_view(), name="ingest-http"),
    re_path(r"^telemetry/query/?$", views.TelemetryQueryView.as_view(), name="telemetry-query"),
    re_path(r"^telemetry/latest/?$", views.LatestStateView.as_view(), name="telemetry-latest"),
]
