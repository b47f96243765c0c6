from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.telemetry.queries import AGGREGATES, QueryError, parse_interval, parse_keys


class IngestResultSerializer(serializers.Serializer[Any]):
    stored = serializers.IntegerField(help_text="Points written.")
    duplicates = serializers.IntegerField(
        help_text="Points dropped because the device already had a point at that time."
    )


class IsoDateTimeField(serializers.DateTimeField):
    """DRF's date-time field, refusing NUL characters: Python's ISO parser stops at a NUL
    and would read ``2025-01-01\x00anything`` as 2025-01-01."""

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str) and "\x00" in value:
            raise serializers.ValidationError("Must not contain NUL characters.")
        return super().to_internal_value(value)


class TelemetryQuerySerializer(serializers.Serializer[Any]):
    """The query of ``/telemetry/query``, from the query string (GET) or the body (POST)."""

    device_id = serializers.IntegerField(min_value=1)
    to = IsoDateTimeField(required=False, help_text="End of the range, exclusive.")
    limit = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Points (or buckets) per page; 100 by default. Exports stream everything "
        "unless a limit is given.",
    )
    order = serializers.ChoiceField(choices=["desc", "asc"], required=False)
    cursor = serializers.CharField(
        required=False, help_text="From the `X-Next-Cursor` header of the previous page."
    )
    keys = serializers.CharField(
        required=False,
        help_text="Comma-separated dot paths to return (gps.speed,io.239); all data if omitted.",
    )
    interval = serializers.CharField(
        required=False, help_text="Bucket size (30s, 5m, 1h, 1d): aggregate instead of raw."
    )
    agg = serializers.CharField(
        required=False,
        help_text="With interval: comma-separated " + ", ".join(AGGREGATES) + "; avg by default.",
    )
    format = serializers.ChoiceField(choices=["json", "csv", "gpx"], default="json")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        # "from" is a Python keyword, so it cannot be declared as an attribute.
        fields["from"] = IsoDateTimeField(
            required=False, help_text="Start of the range, inclusive (ISO-8601)."
        )
        return fields

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if hasattr(data, "getlist"):
            # Query strings may repeat keys=… instead of separating them with commas.
            plain = {name: data.get(name) for name in data}
            if "keys" in data:
                plain["keys"] = ",".join(data.getlist("keys"))
            data = plain
        elif isinstance(data, dict) and isinstance(data.get("keys"), list):
            data = {**data, "keys": ",".join(str(key) for key in data["keys"])}
        if isinstance(data, dict) and "device_id" not in data and "device" in data:
            # The original GET filter was spelled "device".
            data = {**data, "device_id": data["device"]}
        values: dict[str, Any] = super().to_internal_value(data)
        return values

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["keys"] = parse_keys(attrs.get("keys", ""))
            interval = attrs.get("interval")
            attrs["interval_seconds"] = parse_interval(interval) if interval else None
            attrs["aggregates"] = self.aggregates(attrs)
        except QueryError as error:
            raise serializers.ValidationError({error.field: [error.message]}) from None

        start, end = attrs.get("from"), attrs.get("to")
        if start and end and start >= end:
            raise serializers.ValidationError({"to": ["Must be after from."]})
        limit = attrs.get("limit")
        if limit is not None and limit > settings.TELEMETRY_QUERY_MAX_LIMIT:
            raise serializers.ValidationError(
                {"limit": [f"At most {settings.TELEMETRY_QUERY_MAX_LIMIT}."]}
            )
        if attrs["format"] == "gpx" and attrs["interval_seconds"]:
            raise serializers.ValidationError({"format": ["GPX exports raw points only."]})
        attrs.setdefault("order", "asc" if attrs["format"] == "gpx" else "desc")
        return attrs

    def aggregates(self, attrs: dict[str, Any]) -> list[str]:
        if not attrs["interval_seconds"]:
            if attrs.get("agg"):
                raise QueryError("interval", "Give an interval to aggregate.")
            return []
        if not attrs["keys"]:
            raise QueryError("keys", "Name the numeric data paths to aggregate.")
        names = [name.strip() for name in (attrs.get("agg") or "avg").split(",") if name.strip()]
        unknown = [name for name in names if name not in AGGREGATES]
        if unknown or not names:
            raise QueryError("agg", f"Use one or more of: {', '.join(AGGREGATES)}.")
        return list(dict.fromkeys(names))


class PointSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    ts = serializers.DateTimeField()
    data = serializers.JSONField()  # type: ignore[assignment]  # a field, not Serializer.data


class BucketSerializer(serializers.Serializer[Any]):
    device_id = serializers.IntegerField()
    ts = serializers.DateTimeField(help_text="Start of the bucket.")
    values = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField(allow_null=True)),
        help_text='Per data path, per aggregate: {"gps.speed": {"avg": 41.5}}.',
    )


class PositionSerializer(serializers.Serializer[Any]):
    lat = serializers.FloatField()
    lon = serializers.FloatField()
    ts = serializers.DateTimeField()


class LatestStateSerializer(serializers.Serializer[Any]):
    """A device and its latest point; the state fields are null before its first point.

    Describes the response of /telemetry/latest, which builds its rows straight from
    database values: a fleet of thousands must not pay a serializer per field.
    """

    device_id = serializers.IntegerField()
    name = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)
    model = serializers.CharField()
    is_active = serializers.BooleanField()
    ts = serializers.DateTimeField(allow_null=True, help_text="Device time of the newest point.")
    received_at = serializers.DateTimeField(allow_null=True)
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]  # see above
    position = PositionSerializer(allow_null=True, help_text="The newest known position.")
    point_count = serializers.IntegerField()
