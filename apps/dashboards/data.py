"""What a panel draws, computed by the telemetry query code.

Every read goes through ``apps.telemetry.queries`` (``PointQuery``, ``read_points``,
``aggregate_points``), so a panel sees exactly what ``/telemetry/query`` would answer for
the same device, range and interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.dashboards.configs import PanelQuery
from apps.dashboards.models import PanelType
from apps.telemetry import queries

DEFAULT_LAT_KEY = "gps.lat"
DEFAULT_LON_KEY = "gps.lon"
# Aggregates each reducer needs from the buckets, to be combined across buckets.
REDUCER_AGGREGATES = {
    "last": ["last"],
    "first": ["first"],
    "avg": ["sum", "count"],
    "min": ["min"],
    "max": ["max"],
    "sum": ["sum"],
    "count": ["count"],
}


@dataclass(frozen=True)
class DeviceRef:
    id: int
    name: str


def panel_data(
    panel_type: str,
    config: dict[str, Any],
    query: PanelQuery,
    tenant_id: int,
    devices: Sequence[DeviceRef],
    now: datetime,
) -> dict[str, Any]:
    """The panel's answer: the range it covers and the type's own list of values.

    ``devices`` are the query's devices that still exist in the tenant, in the query's
    order; devices deleted since the query was written are left out.
    """
    start, end = query.window(now)
    time_range = queries.TimeRange(start, end)
    body: dict[str, Any] = {
        "type": panel_type,
        "from": queries.iso(start),
        "to": queries.iso(end),
        "interval": query.interval,
    }
    # KNOWN LIMITATION: one or two queries per device, so a panel of 20 devices makes up to
    # 40 round trips. The cap on devices per query (MAX_QUERY_DEVICES) bounds it; a single
    # statement over all devices would need a multi-device form of PointQuery.
    if panel_type == PanelType.TIMESERIES:
        body["series"] = [
            series
            for device in devices
            for series in timeseries(query, tenant_id, device, time_range)
        ]
    elif panel_type in (PanelType.STAT, PanelType.GAUGE):
        reducer = config.get("reduce", "last")
        body["reduce"] = reducer
        body["values"] = [
            value
            for device in devices
            for value in reduced_values(query, tenant_id, device, time_range, reducer)
        ]
    elif panel_type == PanelType.LATEST_TABLE:
        columns = config.get("columns") or query.keys
        body["rows"] = [latest_row(tenant_id, device, time_range, columns) for device in devices]
    else:
        body["tracks"] = [track(query, config, tenant_id, device, time_range) for device in devices]
    return body


def limit_of(query: PanelQuery) -> int:
    return query.limit or int(settings.TELEMETRY_QUERY_MAX_LIMIT)


def numeric(data: dict[str, Any], key: str) -> float | None:
    found, value = queries.lookup(data, key)
    if not found or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def timeseries(
    query: PanelQuery, tenant_id: int, device: DeviceRef, time_range: queries.TimeRange
) -> list[dict[str, Any]]:
    """A series per data path (and aggregate): raw points, or buckets with an interval.

    The newest points are kept when the range holds more than the limit; ``truncated`` says
    so. Points come back oldest first, as a chart draws them.
    """
    limit = limit_of(query)
    point_query = queries.PointQuery(tenant_id, device.id, time_range, order="desc", limit=limit)
    if query.interval_seconds is None:
        rows = list(reversed(queries.read_points(point_query).rows))
        return [
            {
                "device_id": device.id,
                "device_name": device.name,
                "key": key,
                "agg": None,
                "truncated": len(rows) == limit,
                "points": [
                    {"ts": queries.iso(row.ts), "value": value}
                    for row in rows
                    if (value := numeric(row.data, key)) is not None
                ],
            }
            for key in query.keys
        ]

    aggregation = queries.Aggregation(query.interval_seconds, query.keys, query.aggregates)
    buckets = list(reversed(queries.aggregate_points(point_query, aggregation)))
    return [
        {
            "device_id": device.id,
            "device_name": device.name,
            "key": key,
            "agg": aggregate,
            "truncated": len(buckets) == limit,
            "points": [
                {"ts": queries.iso(bucket.start), "value": bucket.values[key][aggregate]}
                for bucket in buckets
                if bucket.values[key][aggregate] is not None
            ],
        }
        for key in query.keys
        for aggregate in query.aggregates
    ]


def reduced_values(
    query: PanelQuery,
    tenant_id: int,
    device: DeviceRef,
    time_range: queries.TimeRange,
    reducer: str,
) -> list[dict[str, Any]]:
    """One value per data path over the whole range (stat and gauge panels).

    The database summarises the range in buckets as long as the range itself; buckets start
    at multiples of the interval since the epoch, so the range falls into at most two, and
    their aggregates are combined here.
    """
    assert time_range.start is not None
    assert time_range.end is not None
    seconds = max(1, int((time_range.end - time_range.start).total_seconds()))
    aggregates = REDUCER_AGGREGATES[reducer]
    buckets = queries.aggregate_points(
        queries.PointQuery(tenant_id, device.id, time_range, order="asc", limit=2),
        queries.Aggregation(seconds, query.keys, aggregates),
    )
    return [
        {
            "device_id": device.id,
            "device_name": device.name,
            "key": key,
            "value": combine(reducer, [bucket.values[key] for bucket in buckets]),
        }
        for key in query.keys
    ]


def combine(reducer: str, parts: list[dict[str, float | None]]) -> float | None:
    """Combine per-bucket aggregates (oldest bucket first) into the reducer's one value."""
    if reducer == "avg":
        count = sum(part["count"] or 0 for part in parts)
        total = sum(part["sum"] or 0 for part in parts)
        return total / count if count else None
    if reducer == "count":
        return sum(part["count"] or 0 for part in parts)
    values = [value for part in parts if (value := part[reducer]) is not None]
    if not values:
        return None
    if reducer == "last":
        return values[-1]
    if reducer == "first":
        return values[0]
    if reducer == "min":
        return min(values)
    if reducer == "max":
        return max(values)
    return sum(values)


def latest_row(
    tenant_id: int, device: DeviceRef, time_range: queries.TimeRange, columns: Sequence[str]
) -> dict[str, Any]:
    """The device's newest point in the range: chosen data paths, or all of its data."""
    point_query = queries.PointQuery(tenant_id, device.id, time_range, order="desc", limit=1)
    rows = queries.read_points(point_query).rows
    if not rows:
        return {"device_id": device.id, "device_name": device.name, "ts": None, "data": None}
    row = rows[0]
    return {
        "device_id": device.id,
        "device_name": device.name,
        "ts": queries.iso(row.ts),
        "data": queries.select_keys(row.data, columns) if columns else row.data,
    }


def track(
    query: PanelQuery,
    config: dict[str, Any],
    tenant_id: int,
    device: DeviceRef,
    time_range: queries.TimeRange,
) -> dict[str, Any]:
    """The device's positions in the range, oldest first; only the newest unless ``track``.

    Points without a position, or at 0,0 (a tracker's "no fix"), are skipped. Without
    ``track`` the newest position among the newest ``limit`` points is shown: a device whose
    last fix is older than that shows none.
    """
    lat_key = config.get("lat_key", DEFAULT_LAT_KEY)
    lon_key = config.get("lon_key", DEFAULT_LON_KEY)
    point_query = queries.PointQuery(
        tenant_id, device.id, time_range, order="desc", limit=limit_of(query)
    )
    positions = []
    for row in queries.read_points(point_query).rows:
        lat, lon = numeric(row.data, lat_key), numeric(row.data, lon_key)
        if lat is None or lon is None or (lat == 0 and lon == 0):
            continue
        positions.append({"ts": queries.iso(row.ts), "lat": lat, "lon": lon})
        if not config.get("track", False):
            break
    positions.reverse()
    return {"device_id": device.id, "device_name": device.name, "positions": positions}
