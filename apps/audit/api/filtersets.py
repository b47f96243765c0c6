from __future__ import annotations

from django import forms
from django_filters import rest_framework as filters

from apps.audit.models import AuditEvent, UserSession
from apps.devices.models import DeviceSession
from quantumfleet.api.filters import IdFilter, UtcIsoDateTimeFilter


class IPAddressFilter(filters.CharFilter):
    """An address, checked before it reaches the database (an inet column on PostgreSQL)."""

    field_class = forms.GenericIPAddressField


class AuditEventFilterSet(filters.FilterSet):
    type = filters.CharFilter(label="Exact event type, e.g. device.connected.")
    type_prefix = filters.CharFilter(
        field_name="type", lookup_expr="startswith", label="Types starting so, e.g. device."
    )
    device_id = IdFilter(label="Events of this device (also deleted ones).")
    user_id = IdFilter(label="Events of this user.")
    ip = IPAddressFilter(label="Exact IP address.")
    # "from" is a Python keyword, so it is declared through the class namespace.
    locals()["from"] = UtcIsoDateTimeFilter(
        field_name="ts", lookup_expr="gte", label="Events at or after this time."
    )
    to = UtcIsoDateTimeFilter(field_name="ts", lookup_expr="lt", label="Events before it.")

    class Meta:
        model = AuditEvent
        fields = ["type", "type_prefix", "device_id", "user_id", "ip", "to"]


class SessionFilterSet(filters.FilterSet):
    is_open = filters.BooleanFilter(
        field_name="ended_at", lookup_expr="isnull", label="Open (true) or closed (false)."
    )
    locals()["from"] = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Sessions started at or after it."
    )
    to = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Sessions started before it."
    )


class DeviceSessionFilterSet(SessionFilterSet):
    device_id = IdFilter()

    class Meta:
        model = DeviceSession
        fields = ["device_id", "transport", "is_open", "to"]


class UserSessionFilterSet(SessionFilterSet):
    user_id = IdFilter()

    class Meta:
        model = UserSession
        fields = ["user_id", "is_open", "to"]
