from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.devices.models import Device, DeviceCommand, DeviceProtocol
from apps.devices.services import MINIMUM_IMPORTED_TOKEN_LENGTH, hash_device_token
from quantumfleet.api.serializers import ReplaceOnPutMixin

IMEI_LENGTH = 15


class DeviceSerializer(ReplaceOnPutMixin, serializers.ModelSerializer[Device]):
    """A device. Its ingest token is never readable: only its first characters."""

    tenant_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "tenant_id",
            "name",
            "external_id",
            "model",
            "protocol",
            "is_active",
            "token_prefix",
            "token_rotated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "token_prefix", "token_rotated_at", "created_at", "updated_at"]

    def validate_external_id(self, value: str | None) -> str | None:
        value = (value or "").strip()
        return value or None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        protocol = attrs.get("protocol", instance.protocol if instance else DeviceProtocol.HTTP)
        external_id = attrs.get("external_id", instance.external_id if instance else None)
        if protocol == DeviceProtocol.TELTONIKA and not is_imei(external_id):
            raise serializers.ValidationError(
                {"external_id": [f"A Teltonika device needs its {IMEI_LENGTH}-digit IMEI here."]}
            )
        return attrs


class DeviceCreateSerializer(DeviceSerializer):
    token = serializers.CharField(
        write_only=True,
        required=False,
        min_length=MINIMUM_IMPORTED_TOKEN_LENGTH,
        max_length=128,
        trim_whitespace=False,
        help_text=(
            "Only to import a device whose token is already configured in its hardware. "
            "Leave it out and the server generates one."
        ),
    )

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "token"]

    def validate_token(self, value: str) -> str:
        if Device.objects.filter(token_hash=hash_device_token(value)).exists():
            raise serializers.ValidationError("Choose another token.")
        return value


class DeviceWithTokenSerializer(DeviceSerializer):
    token = serializers.SerializerMethodField(
        help_text="The ingest token. It is shown only in this response: store it now."
    )

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "token"]

    def get_token(self, device: Device) -> str:
        return str(self.context["token"])


def is_imei(value: str | None) -> bool:
    return bool(value) and len(value or "") == IMEI_LENGTH and (value or "").isdigit()


MAX_COMMAND_TTL_SECONDS = 7 * 24 * 3600


class DeviceCommandSerializer(serializers.ModelSerializer[DeviceCommand]):
    """A command for a device and, once it answered, the answer."""

    device_id = serializers.IntegerField(read_only=True)
    created_by_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = DeviceCommand
        fields = [
            "id",
            "device_id",
            "text",
            "status",
            "response",
            "created_by_id",
            "created_at",
            "expires_at",
            "sent_at",
            "answered_at",
        ]
        read_only_fields = [name for name in fields if name != "text"]


class DeviceCommandCreateSerializer(serializers.Serializer[DeviceCommand]):
    text = serializers.CharField(
        max_length=512,
        help_text="The device's SMS command without login and password, e.g. `getinfo`.",
    )
    ttl_seconds = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_COMMAND_TTL_SECONDS,
        help_text="Seconds the command may wait for the device to connect; then it expires.",
    )

    def validate_text(self, value: str) -> str:
        # Devices read commands as ASCII; anything else would arrive garbled or not at all.
        if not value.isascii() or not value.isprintable():
            raise serializers.ValidationError("Use printable ASCII characters only.")
        return value
