from __future__ import annotations

from typing import Any

import orjson
from django.db.models import QuerySet
from rest_framework import serializers

from apps.dashboards.configs import (
    MAX_JSON_BYTES,
    PANEL_SCHEMAS,
    ConfigError,
    PanelQuery,
    check_panel_config,
    merge_patch,
    parse_query,
)
from apps.dashboards.models import Dashboard, Panel, PanelType, SavedQuery
from apps.devices.models import Device
from quantumfleet.api.serializers import ReplaceOnPutMixin


def check_size(field: str, value: Any) -> None:
    if len(orjson.dumps(value)) > MAX_JSON_BYTES:
        raise serializers.ValidationError({field: [f"At most {MAX_JSON_BYTES} bytes of JSON."]})


def merged(serializer: serializers.ModelSerializer[Any], attrs: dict[str, Any], field: str) -> Any:
    """The JSON field's value after this request: PATCH merges into the stored object."""
    instance = serializer.instance
    if field not in attrs:
        return getattr(instance, field) if instance is not None else {}
    if attrs[field] is None:
        # null clears the whole object, e.g. a panel's own query before it takes a saved one.
        return {}
    if serializer.partial and instance is not None:
        return merge_patch(getattr(instance, field), attrs[field])
    return attrs[field]


def checked_query(raw: Any, field: str, devices: QuerySet[Device]) -> PanelQuery:
    """Parse a query object and check that its devices are the tenant's."""
    try:
        query = parse_query(raw)
    except ConfigError as error:
        raise serializers.ValidationError({error.under(field).path: [error.message]}) from None
    known = set(devices.filter(pk__in=query.device_ids).values_list("pk", flat=True))
    for index, device_id in enumerate(query.device_ids):
        if device_id not in known:
            raise serializers.ValidationError(
                {f"{field}.devices.{index}": [f"No device with id {device_id} in this tenant."]}
            )
    return query


class PanelSerializer(ReplaceOnPutMixin, serializers.ModelSerializer[Panel]):
    """A panel: position and size in grid cells, its type's config, and its query.

    The query is the panel's own (`query`) or a saved one (`saved_query_id`), not both. PUT
    replaces; PATCH merges, and merges `config` and `query` key by key (`null` removes a
    key).
    """

    dashboard_id = serializers.IntegerField(read_only=True)
    saved_query_id = serializers.PrimaryKeyRelatedField(
        source="saved_query",
        queryset=SavedQuery.objects.none(),
        allow_null=True,
        required=False,
        help_text="A saved query of the tenant that feeds the panel.",
    )
    config = serializers.JSONField(
        required=False, help_text="Options of the panel type; see the dashboards docs."
    )
    query = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='The panel\'s own query, e.g. {"devices": [1], "keys": ["gps.speed"], '
        '"last": "24h", "interval": "5m", "agg": ["avg"]}; null clears it.',
    )
    x = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    y = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    w = serializers.IntegerField(min_value=1, max_value=48, required=False)
    h = serializers.IntegerField(min_value=1, max_value=48, required=False)

    class Meta:
        model = Panel
        fields = [
            "id",
            "dashboard_id",
            "title",
            "type",
            "x",
            "y",
            "w",
            "h",
            "config",
            "query",
            "saved_query_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        saved_queries = self.context.get("saved_queries")
        if saved_queries is not None:
            fields["saved_query_id"].queryset = saved_queries  # type: ignore[attr-defined]
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        panel_type = attrs.get("type", instance.type if instance else None)
        if panel_type is None:
            raise serializers.ValidationError({"type": ["This field is required."]})

        config = merged(self, attrs, "config")
        check_size("config", config)
        try:
            check_panel_config(panel_type, config)
        except ConfigError as error:
            raise serializers.ValidationError(
                {error.under("config").path: [error.message]}
            ) from None
        attrs["config"] = config

        query = merged(self, attrs, "query")
        check_size("query", query)
        saved_query = attrs.get("saved_query", instance.saved_query if instance else None)
        if query and saved_query is not None:
            raise serializers.ValidationError(
                {"query": ["Give either a query or a saved_query_id, not both."]}
            )
        if query:
            parsed = checked_query(query, "query", self.context["devices"])
            self.check_keys(panel_type, parsed, "query.keys")
        elif saved_query is not None:
            self.check_keys(panel_type, parse_query(saved_query.query), "saved_query_id")
        attrs["query"] = query
        return attrs

    @staticmethod
    def check_keys(panel_type: str, query: PanelQuery, field: str) -> None:
        if PANEL_SCHEMAS[panel_type].needs_keys and not query.keys:
            raise serializers.ValidationError(
                {field: [f"A {panel_type} panel needs at least one data path in keys."]}
            )


class DashboardSerializer(ReplaceOnPutMixin, serializers.ModelSerializer[Dashboard]):
    """A dashboard and, read only, its panels. PATCH merges `layout` key by key."""

    tenant_id = serializers.IntegerField(read_only=True)
    layout = serializers.JSONField(
        required=False, help_text="Options of the page for the client (columns, refresh, theme)."
    )
    panels = PanelSerializer(many=True, read_only=True)

    class Meta:
        model = Dashboard
        fields = [
            "id",
            "tenant_id",
            "name",
            "description",
            "layout",
            "panels",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        layout = merged(self, attrs, "layout")
        if not isinstance(layout, dict):
            raise serializers.ValidationError({"layout": ["Must be a JSON object."]})
        check_size("layout", layout)
        attrs["layout"] = layout
        return attrs


class SavedQuerySerializer(ReplaceOnPutMixin, serializers.ModelSerializer[SavedQuery]):
    """A named query. PATCH merges `query` key by key; the device list is replaced whole."""

    tenant_id = serializers.IntegerField(read_only=True)
    query = serializers.JSONField(
        help_text='{"devices": [1, 2], "keys": ["gps.speed"], "last": "24h", '
        '"interval": "1h", "agg": ["avg", "max"], "limit": 500}'
    )

    class Meta:
        model = SavedQuery
        fields = ["id", "tenant_id", "name", "description", "query", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        others = self.context["saved_queries"].filter(name=value)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError("This tenant already has a saved query so named.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        query = merged(self, attrs, "query")
        check_size("query", query)
        checked_query(query, "query", self.context["devices"])
        attrs["query"] = query
        return attrs


class SeriesPointSerializer(serializers.Serializer[Any]):
    ts = serializers.DateTimeField()
    value = serializers.FloatField()


class SeriesSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    device_name = serializers.CharField()
    key = serializers.CharField()
    agg = serializers.CharField(allow_null=True, help_text="The aggregate; null for raw points.")
    truncated = serializers.BooleanField(help_text="The range held more than `limit`.")
    points = SeriesPointSerializer(many=True)


class ReducedValueSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    device_name = serializers.CharField()
    key = serializers.CharField()
    value = serializers.FloatField(allow_null=True)


class LatestRowSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    device_name = serializers.CharField()
    ts = serializers.DateTimeField(allow_null=True)
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]  # a field


class TrackPositionSerializer(serializers.Serializer[Any]):
    ts = serializers.DateTimeField()
    lat = serializers.FloatField()
    lon = serializers.FloatField()


class TrackSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    device_name = serializers.CharField()
    positions = TrackPositionSerializer(many=True)


class PanelDataSerializer(serializers.Serializer[Any]):
    """What a panel draws. Which list is present depends on the panel's type."""

    panel_id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=PanelType.choices)
    to = serializers.DateTimeField(help_text="End of the range, exclusive.")
    interval = serializers.CharField(allow_null=True)
    reduce = serializers.CharField(required=False, help_text="stat and gauge panels.")
    series = SeriesSerializer(many=True, required=False, help_text="timeseries panels.")
    values = ReducedValueSerializer(many=True, required=False, help_text="stat and gauge panels.")
    rows = LatestRowSerializer(many=True, required=False, help_text="latest_table panels.")
    tracks = TrackSerializer(many=True, required=False, help_text="map panels.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        # "from" is a Python keyword, so it cannot be declared as an attribute.
        fields["from"] = serializers.DateTimeField(help_text="Start of the range, inclusive.")
        return fields
