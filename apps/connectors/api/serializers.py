from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.connectors.models import (
    Connector,
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Rule,
    RuleOperator,
)
from apps.devices.models import Device


class ConnectorSerializer(serializers.ModelSerializer[Connector]):
    """A connector. Its secret can be written, never read: ``has_secret`` says if one is set."""

    tenant_id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=ConnectorKind.choices)
    config = serializers.JSONField(required=False, default=dict)
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=512,
        trim_whitespace=False,
        help_text=(
            "Bearer token, basic-auth password, or HMAC key (outbound: signs the body; "
            'webhook: verifies it). Omit it to keep the stored one; send "" to remove it.'
        ),
    )
    has_secret = serializers.SerializerMethodField()
    webhook_token_prefix = serializers.CharField(read_only=True)

    class Meta:
        model = Connector
        fields = [
            "id",
            "tenant_id",
            "name",
            "kind",
            "is_active",
            "config",
            "secret",
            "has_secret",
            "webhook_token_prefix",
            "next_poll_at",
            "last_polled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "next_poll_at", "last_polled_at", "created_at", "updated_at"]
        # "create or update by name" is the API's own rule; the view applies it.
        validators: list[Any] = []

    def get_has_secret(self, connector: Connector) -> bool:
        return bool(connector.secret)


class ConnectorWithTokenSerializer(ConnectorSerializer):
    webhook_token = serializers.SerializerMethodField(
        help_text="The webhook's token, for POST /hooks/{token}. Shown only in this response."
    )

    class Meta(ConnectorSerializer.Meta):
        fields = [*ConnectorSerializer.Meta.fields, "webhook_token"]

    def get_webhook_token(self, connector: Connector) -> str | None:
        token = self.context.get("webhook_token")
        return str(token) if token else None


class ConnectorCallRequestSerializer(serializers.Serializer[Any]):
    payload = serializers.JSONField(
        required=False,
        default=None,
        help_text="What the body template reads as {{payload...}}; the body without one.",
    )
    device_id = serializers.IntegerField(
        required=False, help_text="A device of the tenant, for {{device...}} in the template."
    )


class QueuedCallSerializer(serializers.Serializer[Any]):
    call_id = serializers.IntegerField()
    log_id = serializers.IntegerField()
    status = serializers.CharField()


class ConnectorCallSerializer(serializers.ModelSerializer[ConnectorCall]):
    connector_id = serializers.IntegerField(read_only=True)
    rule_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ConnectorCall
        fields = [
            "id",
            "connector_id",
            "rule_id",
            "status",
            "attempts",
            "context",
            "last_error",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class ConnectorLogSerializer(serializers.ModelSerializer[ConnectorLog]):
    connector_id = serializers.IntegerField(read_only=True)
    call_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ConnectorLog
        fields = [
            "id",
            "connector_id",
            "call_id",
            "direction",
            "status",
            "attempt",
            "http_status",
            "duration_ms",
            "request_excerpt",
            "response_excerpt",
            "error",
            "stored",
            "created_at",
        ]
        read_only_fields = fields


class RuleSerializer(serializers.ModelSerializer[Rule]):
    """A rule: when ``path`` of a stored point compares as ``operator`` with ``value``, call
    ``connector_id``, at most once per ``cooldown_seconds`` of device time per device."""

    tenant_id = serializers.IntegerField(read_only=True)
    connector_id = serializers.IntegerField()
    device_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    operator = serializers.ChoiceField(choices=RuleOperator.choices)
    value = serializers.JSONField(required=False, allow_null=True, default=None)

    class Meta:
        model = Rule
        fields = [
            "id",
            "tenant_id",
            "name",
            "connector_id",
            "device_id",
            "path",
            "operator",
            "value",
            "cooldown_seconds",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list[Any] = []

    def validate_path(self, value: str) -> str:
        value = value.strip()
        if not value or any(not step for step in value.split(".")):
            raise serializers.ValidationError("A dotted path into data, such as gps.speed.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tenant = self.context["tenant"]
        instance = self.instance
        operator = attrs.get("operator", instance.operator if instance else None)
        value = attrs.get("value", instance.value if instance else None)
        numeric = (RuleOperator.GT, RuleOperator.GTE, RuleOperator.LT, RuleOperator.LTE)
        if operator in numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise serializers.ValidationError({"value": [f"{operator} compares with a number."]})
        if operator == RuleOperator.CHANGED_TO and value is None:
            raise serializers.ValidationError({"value": ["Say which value the change is to."]})

        if "connector_id" in attrs:
            connector = (
                Connector.objects.for_tenant(tenant).filter(pk=attrs["connector_id"]).first()
            )
            if connector is None:
                raise serializers.ValidationError({"connector_id": ["No such connector."]})
            if connector.kind != ConnectorKind.OUTBOUND_HTTP:
                raise serializers.ValidationError(
                    {"connector_id": ["A rule calls an outbound HTTP connector."]}
                )
        device_id = attrs.get("device_id")
        if (
            device_id is not None
            and not Device.objects.for_tenant(tenant).filter(pk=device_id).exists()
        ):
            raise serializers.ValidationError({"device_id": ["No such device."]})
        name = attrs.get("name")
        if name is not None:
            taken = Rule.objects.for_tenant(tenant).filter(name=name)
            if instance is not None:
                taken = taken.exclude(pk=instance.pk)
            if taken.exists():
                raise serializers.ValidationError(
                    {"name": ["A rule of this tenant has this name."]}
                )
        return attrs
