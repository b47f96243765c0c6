from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from apps.devices import services
from apps.devices.models import Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin[Device]):
    list_display = [
        "name",
        "tenant",
        "external_id",
        "model",
        "protocol",
        "is_active",
        "masked_token",
        "updated_at",
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

    def response_add(self, request: HttpRequest, obj: Device, *args: Any) -> HttpResponse:
        issued = getattr(request, "issued_device_tokens", None)
        if issued:
            return self.render_issued_tokens(request, issued, "Device created")
        return super().response_add(request, obj, *args)

    @admin.action(description="Rotate the ingest token of the selected devices")
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Device]) -> HttpResponse:
        issued = [(device, services.rotate_device_token(device)) for device in queryset]
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
