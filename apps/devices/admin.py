from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from apps.accounts.models import User
from apps.audit.models import EventType
from apps.devices import admin_views, services
from apps.devices.models import Device, DeviceCommand, DeviceSession
from apps.telemetry.models import DeviceState
from apps.tenants.admin_scoping import TenantScopedAdminMixin


class DeviceAdminForm(forms.ModelForm[Device]):
    """The device form; a new device must fit its tenant's device quota."""

    class Meta:
        model = Device
        fields = ["tenant", "name", "external_id", "model", "protocol", "is_active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant")
        if tenant is not None and not self.instance.pk:
            # The admin validates inside its transaction, so the quota's row lock holds
            # until the device is saved.
            try:
                services.check_device_quota(tenant)
            except services.DeviceQuotaExceededError as error:
                raise forms.ValidationError(
                    f"{tenant} may have at most {error.limit} devices; delete one first."
                ) from None
        return cleaned


@admin.register(Device)
class DeviceAdmin(TenantScopedAdminMixin, admin.ModelAdmin[Device]):
    form = DeviceAdminForm
    list_display = [
        "name",
        "tenant",
        "external_id",
        "model",
        "protocol",
        "is_active",
        "masked_token",
        "updated_at",
        "overview_link",
    ]
    list_filter = ["is_active", "protocol", "model", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "external_id", "model", "tenant__name", "token_prefix"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["masked_token", "token_rotated_at", "created_at", "updated_at"]
    fields = [
        "tenant",
        "name",
        "external_id",
        "model",
        "protocol",
        "is_active",
        "masked_token",
        "token_rotated_at",
        "created_at",
        "updated_at",
    ]
    actions = ["rotate_tokens"]

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any, name: str, route: str) -> URLPattern:
            wrapped = self.admin_site.admin_view(partial(function, self))
            return path(f"<path:object_id>/{route}", wrapped, name=f"devices_device_{name}")

        return [
            view(admin_views.device_overview, "overview", "overview/"),
            view(admin_views.device_telemetry, "telemetry", "telemetry/"),
            view(admin_views.device_telemetry_csv, "telemetry_csv", "telemetry.csv"),
            view(admin_views.queue_device_command, "command", "command/"),
            view(admin_views.rotate_device_token, "rotate_token", "rotate-token/"),
            *super().get_urls(),
        ]

    @admin.display(description="page")
    def overview_link(self, device: Device) -> str:
        url = reverse("admin:devices_device_overview", args=[device.pk])
        return format_html('<a href="{}">overview</a>', url)

    @admin.display(description="token")
    def masked_token(self, device: Device) -> str:
        return device.masked_token if device.token_prefix else "—"

    def save_model(self, request: HttpRequest, obj: Device, form: Any, change: bool) -> None:
        if not change:
            token = services.generate_device_token()
            services.set_device_token(obj, token)
            # Kept on the request only, to show once in response_add; never stored.
            request.issued_device_tokens = [(obj, token)]  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)
        # The admin's forms change devices too: they belong in the same audit trail.
        if not change:
            services.record_device_event(EventType.DEVICE_CREATED, obj, request.user.pk)
        elif form.changed_data:
            services.record_device_event(
                EventType.DEVICE_UPDATED, obj, request.user.pk, fields=sorted(form.changed_data)
            )

    def delete_model(self, request: HttpRequest, obj: Device) -> None:
        services.delete_device(obj, actor_id=request.user.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            services.delete_device(device, actor_id=request.user.pk)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # A device's latest state is read-only on its own page but goes with its device.
        perms_needed.discard(DeviceState._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def response_add(self, request: HttpRequest, obj: Device, *args: Any) -> HttpResponse:
        issued = getattr(request, "issued_device_tokens", None)
        if issued:
            return self.render_issued_tokens(request, issued, "Device created")
        return super().response_add(request, obj, *args)

    @admin.action(description="Rotate the ingest token of the selected devices")
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Device]) -> HttpResponse:
        issued = [
            (device, services.rotate_device_token(device, actor_id=request.user.pk))
            for device in queryset
        ]
        return self.render_issued_tokens(request, issued, "Ingest tokens rotated")

    def render_issued_tokens(
        self, request: HttpRequest, issued: list[tuple[Device, str]], title: str
    ) -> HttpResponse:
        """A page that shows new tokens once; not cached, not put in messages or logs."""
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "issued": issued,
        }
        response = TemplateResponse(request, "admin/devices/device/issued_tokens.html", context)
        add_never_cache_headers(response)
        return response


@admin.register(DeviceCommand)
class DeviceCommandAdmin(TenantScopedAdminMixin, admin.ModelAdmin[DeviceCommand]):
    """Commands to devices; queued from here or the API, sent by the Teltonika daemon."""

    list_display = ["id", "device", "text", "status", "created_at", "sent_at", "answered_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["device"]
    search_fields = ["text", "device__name", "device__external_id"]
    raw_id_fields = ["device"]
    fields = [
        "device",
        "text",
        "expires_at",
        "status",
        "response",
        "created_by",
        "sent_at",
        "answered_at",
        "sent_by",
    ]
    readonly_fields = ["status", "response", "created_by", "sent_at", "answered_at", "sent_by"]
    # Counting a large command history on every page is not worth its query.
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: DeviceCommand | None = None) -> bool:
        # A command is history once queued: only new ones are made here.
        return obj is None and super().has_change_permission(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        ttl = timedelta(seconds=settings.DEVICE_COMMAND_DEFAULT_TTL)
        return {**super().get_changeform_initial_data(request), "expires_at": timezone.now() + ttl}

    def save_model(self, request: HttpRequest, obj: DeviceCommand, form: Any, change: bool) -> None:
        obj.tenant_id = obj.device.tenant_id
        obj.created_by = request.user if isinstance(request.user, User) else None
        super().save_model(request, obj, form, change)


@admin.register(DeviceSession)
class DeviceSessionAdmin(TenantScopedAdminMixin, admin.ModelAdmin[DeviceSession]):
    """Connections of devices to the daemons, open and closed. Read only."""

    list_display = [
        "device",
        "transport",
        "peer",
        "started_at",
        "last_seen",
        "ended_at",
        "records",
        "close_reason",
    ]
    list_filter = ["transport", "close_reason", "tenant"]
    list_select_related = ["device"]
    search_fields = ["device__name", "device__external_id", "peer"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeviceSession | None = None) -> bool:
        return False
