from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from rest_framework import serializers

from apps.audit.middleware import MAX_USER_AGENT
from apps.audit.models import AuditEvent, UserSession
from apps.audit.services import SIDE_EFFECT_ACTORS
from apps.devices.models import DeviceSession

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MAX_PAYLOAD_BYTES = 16 * 1024


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """An event as recorded. `user_email` and `device_name` are null once deleted."""

    tenant_id = serializers.IntegerField(read_only=True, allow_null=True)
    user_id = serializers.IntegerField(read_only=True, allow_null=True)
    user_email = serializers.EmailField(source="user.email", read_only=True, allow_null=True)
    device_id = serializers.IntegerField(read_only=True, allow_null=True)
    device_name = serializers.CharField(source="device.name", read_only=True, allow_null=True)
    payload = serializers.JSONField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "tenant_id",
            "type",
            "ts",
            "created_at",
            "user_id",
            "user_email",
            "device_id",
            "device_name",
            "ip",
            "user_agent",
            "payload",
        ]
        read_only_fields = fields


class AuditEventCreateSerializer(serializers.Serializer[Any]):
    """An event to record. Its tenant is the request's."""

    type = serializers.CharField(
        max_length=64,
        help_text="Dotted lower-case name, e.g. `device.connected`. Unknown types are stored "
        "without side effects.",
    )
    ts = serializers.DateTimeField(required=False, help_text="When it happened; now if omitted.")
    user_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A user of the tenant."
    )
    device_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A device of the tenant."
    )
    ip = serializers.IPAddressField(
        required=False, allow_null=True, help_text="The actor's address; the caller's if omitted."
    )
    user_agent = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_USER_AGENT, trim_whitespace=False
    )
    payload = serializers.JSONField(
        required=False,
        help_text="A JSON object. Device events may give `transport`, `peer` and `reason`.",
    )

    def validate_type(self, value: str) -> str:
        if not EVENT_TYPE_PATTERN.match(value):
            raise serializers.ValidationError(
                "Lower-case words joined by dots, such as device.connected."
            )
        return value

    def validate_user_id(self, value: int | None) -> int | None:
        if value is not None and not self.context["members"].filter(user_id=value).exists():
            raise serializers.ValidationError("No user with this id in this tenant.")
        return value

    def validate_device_id(self, value: int | None) -> int | None:
        if value is not None and not self.context["devices"].filter(pk=value).exists():
            raise serializers.ValidationError("No device with this id in this tenant.")
        return value

    def validate_payload(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if len(orjson.dumps(value)) > MAX_PAYLOAD_BYTES:
            raise serializers.ValidationError(f"At most {MAX_PAYLOAD_BYTES} bytes of JSON.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        actor = SIDE_EFFECT_ACTORS.get(attrs["type"])
        if actor is not None and attrs.get(actor) is None:
            raise serializers.ValidationError({actor: [f"A {attrs['type']} event needs it."]})
        return attrs


class DeviceSessionSerializer(serializers.ModelSerializer[DeviceSession]):
    """A connection of a device, open while `ended_at` is null."""

    device_id = serializers.IntegerField(read_only=True)
    is_open = serializers.BooleanField(read_only=True)
    duration_seconds = serializers.SerializerMethodField(
        help_text="From start to end, or to the last sign of life while open."
    )

    class Meta:
        model = DeviceSession
        fields = [
            "id",
            "device_id",
            "transport",
            "peer",
            "started_at",
            "last_seen",
            "ended_at",
            "is_open",
            "duration_seconds",
            "records",
            "bytes_received",
            "close_reason",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, session: DeviceSession) -> float:
        return duration(session.started_at, session.ended_at or session.last_seen)


class UserSessionSerializer(serializers.ModelSerializer[UserSession]):
    """A user's presence in the tenant, open while `ended_at` is null."""

    user_id = serializers.IntegerField(read_only=True, allow_null=True)
    is_open = serializers.BooleanField(read_only=True)
    duration_seconds = serializers.SerializerMethodField(
        help_text="From start to end, or to the last sign of life while open."
    )

    class Meta:
        model = UserSession
        fields = [
            "id",
            "user_id",
            "ip",
            "user_agent",
            "started_at",
            "last_seen",
            "ended_at",
            "is_open",
            "duration_seconds",
            "close_reason",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, session: UserSession) -> float:
        return duration(session.started_at, session.ended_at or session.last_seen)


def duration(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
