"""Parsing of the HTTP ingest body: the seed's single point and the batch forms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.telemetry.batching import Reading
from apps.telemetry.services import InvalidPointError, check_timestamp


@dataclass(frozen=True)
class RawPoint:
    ts: Any
    data: Any
    # Where the point sits in the body, to name it in errors: "" or "points.3."
    path: str
    index: int | None


@dataclass(frozen=True)
class IngestBody:
    token: str | None
    points: list[RawPoint]


def parse_body(body: Any) -> IngestBody:
    """Recognise ``{token, ts, data}``, ``{token, points: [...]}`` or ``[{ts, data}, ...]``."""
    if isinstance(body, list):
        return IngestBody(token=None, points=batch_points(body, prefix=""))
    if not isinstance(body, dict):
        raise serializers.ValidationError(
            {"non_field_errors": ["Send a JSON object, or a JSON list of points."]}
        )

    token = body.get("token")
    if token is not None and not isinstance(token, str):
        raise serializers.ValidationError({"token": ["Must be a string."]})
    if "points" in body:
        if not isinstance(body["points"], list):
            raise serializers.ValidationError({"points": ["Must be a list of points."]})
        return IngestBody(token=token, points=batch_points(body["points"], prefix="points."))
    if "data" not in body:
        raise serializers.ValidationError({"data": ["This field is required."]})
    return IngestBody(token=token, points=[RawPoint(body.get("ts"), body["data"], "", None)])


def batch_points(items: list[Any], prefix: str) -> list[RawPoint]:
    field = prefix.rstrip(".") or "non_field_errors"
    if not items:
        raise serializers.ValidationError({field: ["Send at least one point."]})
    if len(items) > settings.TELEMETRY_MAX_BATCH_POINTS:
        raise serializers.ValidationError(
            {field: [f"Send at most {settings.TELEMETRY_MAX_BATCH_POINTS} points per request."]}
        )

    points = []
    for index, item in enumerate(items):
        path = f"{prefix}{index}."
        if not isinstance(item, dict):
            raise serializers.ValidationError({path.rstrip("."): ["Must be an object."]})
        if "ts" not in item:
            # Points of a batch without times would all get the arrival time and collapse
            # into one as duplicates.
            raise serializers.ValidationError(
                {f"{path}ts": ["Required for every point of a batch."]}
            )
        if "data" not in item:
            raise serializers.ValidationError({f"{path}data": ["This field is required."]})
        points.append(RawPoint(item["ts"], item["data"], path, index))
    return points


def to_readings(raw_points: list[RawPoint], now: datetime) -> list[Reading]:
    """Typed readings for the ingest service, or a 400 naming the first bad field."""
    readings = []
    for raw in raw_points:
        ts = now if raw.ts is None and raw.index is None else parse_timestamp(raw)
        try:
            # In UTC from here on: the batcher matches the stored keys to these times.
            ts = check_timestamp(ts, now)
        except InvalidPointError as error:
            raise serializers.ValidationError({f"{raw.path}ts": [error.message]}) from None
        if not isinstance(raw.data, dict):
            raise serializers.ValidationError({f"{raw.path}data": ["Must be a JSON object."]})
        readings.append(Reading(ts, raw.data))
    return readings


def parse_timestamp(raw: RawPoint) -> datetime:
    if not isinstance(raw.ts, str):
        raise serializers.ValidationError(
            {f"{raw.path}ts": ["Must be an ISO-8601 string, e.g. 2025-01-01T12:00:00Z."]}
        )
    try:
        if "\x00" in raw.ts:
            # Python's ISO parser stops at a NUL instead of refusing what follows it.
            raise ValueError("NUL character")
        return datetime.fromisoformat(raw.ts.strip())
    except ValueError:
        raise serializers.ValidationError(
            {f"{raw.path}ts": [f"{raw.ts[:40]!r} is not ISO-8601, e.g. 2025-01-01T12:00:00Z."]}
        ) from None
