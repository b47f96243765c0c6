from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.audit.models import AuditEvent, UserSession
from apps.tenants.admin_scoping import TenantScopedAdminMixin


@admin.register(AuditEvent)
class AuditEventAdmin(TenantScopedAdminMixin, admin.ModelAdmin[AuditEvent]):
    """The audit trail of every tenant. Read only: events are never added, changed or
    removed here. Search by device name or user email; filter by type and tenant."""

    list_display = ["ts", "type", "tenant", "user", "device_id", "device", "ip"]
    list_filter = ["type", "tenant"]
    list_select_related = ["tenant", "user", "device"]
    search_fields = ["type", "user__email", "device__name", "device__external_id"]
    date_hierarchy = "ts"
    # Counting a long trail on every page is not worth its query.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


@admin.register(UserSession)
class UserSessionAdmin(TenantScopedAdminMixin, admin.ModelAdmin[UserSession]):
    """Sessions of users in tenants, open and closed. Read only."""

    list_display = ["user", "tenant", "started_at", "last_seen", "ended_at", "ip", "close_reason"]
    list_filter = ["close_reason", "tenant"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__email", "tenant__name"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UserSession | None = None) -> bool:
        return False
