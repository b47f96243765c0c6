from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.telemetry.models import DeviceState
from apps.tenants.admin_scoping import TenantScopedAdminMixin

# Telemetry points are not registered here: Django's admin cannot yet show models with a
# composite primary key, and a table of millions of rows needs its own per-device page
# rather than a changelist. Operators read points through /telemetry/query and its CSV.


@admin.register(DeviceState)
class DeviceStateAdmin(TenantScopedAdminMixin, admin.ModelAdmin[DeviceState]):
    """The latest point of each device, read-only: only ingest writes it."""

    list_display = [
        "device",
        "tenant",
        "last_ts",
        "last_received_at",
        "latitude",
        "longitude",
        "point_count",
    ]
    list_filter = ["tenant"]
    list_select_related = ["device", "tenant"]
    search_fields = ["device__name", "device__external_id"]
    ordering = ["-last_ts"]
    # Counting a large table for the paginator costs more than the page itself.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
