"""Reading telemetry: raw points, buckets computed in the database, and exports."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection
from django.db.models import QuerySet

from apps.telemetry.models import Telemetry
from quantumfleet.database import bound_cursor

AGGREGATES = ("avg", "min", "max", "sum", "count", "first", "last")
INTERVAL_PATTERN = re.compile(r"^(\d{1,4})([smhd])$")
INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The span a newest-first read asks for before it reads further back (see newest_first).
RECENT_WINDOW = timedelta(days=31)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


class QueryError(ValueError):
    """A query parameter that cannot be honoured, with the parameter it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TimeRange:
    """``start`` inclusive, ``end`` exclusive; either may be open."""

    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class PointRow:
    ts: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Page:
    rows: list[PointRow]
    next_cursor: str | None


def parse_interval(value: str) -> int:
    """``5m`` → 300 seconds."""
    match = INTERVAL_PATTERN.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise QueryError("interval", f"{value!r} is not an interval such as 30s, 5m, 1h or 1d.")
    return int(match.group(1)) * INTERVAL_UNITS[match.group(2)]


def parse_keys(value: str | Sequence[str]) -> list[str]:
    keys = value.split(",") if isinstance(value, str) else list(value)
    keys = [key.strip() for key in keys if isinstance(key, str) and key.strip()]
    for key in keys:
        if not KEY_PATTERN.match(key):
            raise QueryError("keys", f"{key!r} is not a dot path such as gps.speed or io.239.")
    return list(dict.fromkeys(keys))


def select_keys(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Only the given dot paths of ``data``, nested as they were; missing paths left out."""
    selected: dict[str, Any] = {}
    for key in keys:
        found, value = lookup(data, key)
        if not found:
            continue
        target = selected
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return selected


def lookup(data: Any, key: str) -> tuple[bool, Any]:
    value = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def encode_cursor(order: str, ts: datetime) -> str:
    raw = f"{order}|{ts.astimezone(UTC).isoformat()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> datetime:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_order, _, iso = base64.urlsafe_b64decode(padded).decode().partition("|")
        ts = datetime.fromisoformat(iso)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("cursor", "Not a cursor this API returned.") from None
    if cursor_order != order:
        raise QueryError("cursor", "This cursor belongs to a query with the other order.")
    return ts


@dataclass(frozen=True)
class PointQuery:
    """Which points of one device, in which order, how many (None: all)."""

    tenant_id: int
    device_id: int
    time_range: TimeRange
    order: str = "desc"
    limit: int | None = None


@dataclass(frozen=True)
class Aggregation:
    """Numeric data paths to summarise, with which aggregates, per bucket of seconds."""

    interval_seconds: int
    keys: Sequence[str]
    aggregates: Sequence[str]


def points_queryset(query: PointQuery) -> QuerySet[Telemetry]:
    queryset = Telemetry.objects.for_tenant(query.tenant_id).filter(device_id=query.device_id)
    if query.time_range.start is not None:
        queryset = queryset.filter(ts__gte=query.time_range.start)
    if query.time_range.end is not None:
        queryset = queryset.filter(ts__lt=query.time_range.end)
    return queryset.order_by("ts" if query.order == "asc" else "-ts")


def read_points(query: PointQuery, cursor: str | None = None) -> Page:
    """One page of a device's points, served by the (tenant, device, ts) key."""
    assert query.limit is not None, "a page needs a limit"
    queryset = points_queryset(query)
    if cursor:
        after = decode_cursor(cursor, query.order)
        queryset = (
            queryset.filter(ts__gt=after) if query.order == "asc" else queryset.filter(ts__lt=after)
        )

    wanted = query.limit + 1
    if query.order == "desc" and query.time_range.start is None:
        fetched = newest_first(queryset, wanted)
    else:
        fetched = list(queryset.values_list("ts", "data")[:wanted])
    rows = [PointRow(ts, data) for ts, data in fetched[: query.limit]]
    next_cursor = encode_cursor(query.order, rows[-1].ts) if len(fetched) > query.limit else None
    return Page(rows, next_cursor)


def newest_first(queryset: QuerySet[Telemetry], wanted: int) -> list[tuple[datetime, Any]]:
    """The newest ``wanted`` points of a query with no lower time bound, recent ones first.

    Without a lower bound, PostgreSQL opens an index scan on every partition of the table,
    and plans for all of them: a cost that grows with the months of history kept. A
    device's newest points are nearly always in its last weeks, so those are asked for
    first, with a bound that lets the planner leave the older partitions out; only when
    they hold too few points is the rest read, older than that bound.
    """
    if connection.vendor != "postgresql":
        return list(queryset.values_list("ts", "data")[:wanted])
    recent_since = datetime.now(UTC) - RECENT_WINDOW
    fetched = list(queryset.filter(ts__gte=recent_since).values_list("ts", "data")[:wanted])
    if len(fetched) < wanted:
        older = queryset.filter(ts__lt=recent_since).values_list("ts", "data")
        fetched += list(older[: wanted - len(fetched)])
    return fetched


def iterate_points(query: PointQuery) -> Iterator[PointRow]:
    """Every point asked for, fetched in chunks so exports do not sit in memory."""
    queryset = points_queryset(query).values_list("ts", "data")
    if query.limit is not None:
        queryset = queryset[: query.limit]
    for ts, data in queryset.iterator(chunk_size=2000):
        yield PointRow(ts, data)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    values: dict[str, dict[str, float | None]]


def aggregate_points(query: PointQuery, aggregation: Aggregation) -> list[Bucket]:
    """Numeric data paths summarised per time bucket, computed by the database.

    Buckets start at multiples of the interval since the Unix epoch (UTC), so ``1d``
    buckets start at midnight UTC. Values that are not numbers are ignored; buckets with
    no point are left out. ``query.limit`` counts buckets.
    """
    sql, params = aggregate_sql(query, aggregation)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    buckets = []
    for row in rows:
        values: dict[str, dict[str, float | None]] = {}
        column = 1
        for key in aggregation.keys:
            values[key] = {}
            for aggregate in aggregation.aggregates:
                values[key][aggregate] = row[column]
                column += 1
        buckets.append(Bucket(bucket_start(row[0]), values))
    return buckets


def bucket_start(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromtimestamp(int(value), tz=UTC)


def aggregate_sql(query: PointQuery, aggregation: Aggregation) -> tuple[str, list[Any]]:
    keys, aggregates = aggregation.keys, aggregation.aggregates
    interval_seconds, time_range = aggregation.interval_seconds, query.time_range
    postgres = connection.vendor == "postgresql"
    params: list[Any] = []

    # The innermost query reads each wanted path as a number, or NULL when it is not one.
    if postgres:
        bucket = "floor(extract(epoch FROM ts) / %s)::bigint * %s"
    else:
        # Django's SQLite text timestamps are UTC; '%%s' is strftime's epoch seconds.
        bucket = "(CAST(strftime('%%s', ts) AS INTEGER) / %s) * %s"
    params += [interval_seconds, interval_seconds]
    value_columns = []
    for index, key in enumerate(keys):
        if postgres:
            value_columns.append(
                f"CASE WHEN jsonb_typeof(data #> %s) = 'number' "
                f"THEN (data #>> %s)::double precision END AS v{index}"
            )
            params += [key.split("."), key.split(".")]
        else:
            path = "$." + ".".join(f'"{part}"' for part in key.split("."))
            value_columns.append(
                f"CASE WHEN json_type(data, %s) IN ('integer', 'real') "
                f"THEN json_extract(data, %s) END AS v{index}"
            )
            params += [path, path]

    where = ["tenant_id = %s", "device_id = %s"]
    params += [query.tenant_id, query.device_id]
    if time_range.start is not None:
        where.append("ts >= %s")
        params.append(connection.ops.adapt_datetimefield_value(time_range.start))
    if time_range.end is not None:
        where.append("ts < %s")
        params.append(connection.ops.adapt_datetimefield_value(time_range.end))
    inner = (
        f"SELECT {bucket} AS bucket, ts, {', '.join(value_columns)} "
        f"FROM telemetry WHERE {' AND '.join(where)}"
    )

    # First and last need the order of points inside each bucket: window functions,
    # written so that PostgreSQL and SQLite run the same text.
    windows = []
    if {"first", "last"} & set(aggregates):
        for index in range(len(keys)):
            for name, direction in (("first", "ASC"), ("last", "DESC")):
                if name in aggregates:
                    windows.append(
                        f"FIRST_VALUE(v{index}) OVER (PARTITION BY bucket "
                        f"ORDER BY (v{index} IS NULL), ts {direction}) AS {name}{index}"
                    )
    middle = (
        f"SELECT inner_points.*{''.join(', ' + w for w in windows)} FROM ({inner}) inner_points"
    )

    selected = []
    for index in range(len(keys)):
        for aggregate in aggregates:
            if aggregate in ("first", "last"):
                selected.append(f"MAX({aggregate}{index})")
            elif aggregate == "count":
                selected.append(f"COUNT(v{index})")
            else:
                selected.append(f"{aggregate.upper()}(v{index})")
    direction = "ASC" if query.order == "asc" else "DESC"
    sql = (
        f"SELECT bucket, {', '.join(selected)} FROM ({middle}) points "
        f"GROUP BY bucket ORDER BY bucket {direction} LIMIT %s"
    )
    params.append(query.limit)
    return sql, params


def iso_sql(column: str) -> str:
    """SQL rendering a timestamp as the API does: RFC 3339 in UTC, microseconds if any."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL "
        f"WHEN date_trunc('second', {column}) = {column} "
        f"""THEN to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') """
        f"""ELSE to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END"""
    )


LATEST_STATE_JSON = f"""json_build_object(
    'device_id', devices.id,
    'name', devices.name,
    'external_id', devices.external_id,
    'model', devices.model,
    'is_active', devices.is_active,
    'ts', {iso_sql("state.last_ts")},
    'received_at', {iso_sql("state.last_received_at")},
    'data', state.last_data,
    'position', CASE WHEN state.position_ts IS NULL THEN NULL ELSE json_build_object(
        'lat', state.latitude, 'lon', state.longitude, 'ts', {iso_sql("state.position_ts")})
        END,
    'point_count', coalesce(state.point_count, 0)
)"""


def latest_states_page(devices: QuerySet[Any], limit: int, offset: int) -> tuple[int, bytes]:
    """How many devices ``devices`` holds, and one page of their latest states as JSON.

    ``devices`` is an ordered, tenant-scoped queryset. On PostgreSQL a single statement
    counts, pages and writes the whole JSON answer; elsewhere the same answer is built here.
    """
    ids = devices.values_list("id", flat=True)
    if connection.vendor != "postgresql":
        page = list(ids[offset : offset + limit])
        return ids.count(), latest_states_json_here(page)

    page_sql, page_params = ids[offset : offset + limit].query.sql_with_params()
    all_sql, all_params = ids.order_by().query.sql_with_params()
    # ARRAY(…) keeps the order of the ordered page query; ORDINALITY numbers it.
    sql = f"""
        SELECT
            (SELECT count(*) FROM ({all_sql}) AS matching),
            convert_to(coalesce(
                json_agg({LATEST_STATE_JSON} ORDER BY page.position), '[]'
            )::text, 'UTF8')
        FROM unnest(ARRAY({page_sql})) WITH ORDINALITY AS page(device_id, position)
        JOIN devices ON devices.id = page.device_id
        LEFT JOIN device_state AS state ON state.device_id = devices.id
    """
    # The answer as bytea in a binary result: the bytes of the response as they are, with
    # no decoding to a Python string and encoding back (and no hex, as text results have).
    with bound_cursor() as cursor:
        # Not prepared: a plan kept for the session would be made for whichever tenant and
        # table sizes came first.
        cursor.execute(sql, [*all_params, *page_params], binary=True, prepare=False)
        count, body = cursor.fetchone() or (0, b"[]")
    return int(count), bytes(body)


def latest_states_json_here(device_ids: Sequence[int]) -> bytes:
    """The fleet view of these devices, in this order, built in Python (SQLite)."""
    from apps.devices.models import Device

    rows = {
        row["id"]: row
        for row in Device.objects.filter(id__in=device_ids).values(*LATEST_STATE_COLUMNS)
    }
    return orjson.dumps([latest_state_body(rows[device_id]) for device_id in device_ids])


LATEST_STATE_COLUMNS = (
    "id",
    "name",
    "external_id",
    "model",
    "is_active",
    "state__last_ts",
    "state__last_received_at",
    "state__last_data",
    "state__position_ts",
    "state__latitude",
    "state__longitude",
    "state__point_count",
)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def latest_state_body(row: dict[str, Any]) -> dict[str, Any]:
    last_ts, position_ts = row["state__last_ts"], row["state__position_ts"]
    received_at = row["state__last_received_at"]
    return {
        "device_id": row["id"],
        "name": row["name"],
        "external_id": row["external_id"],
        "model": row["model"],
        "is_active": row["is_active"],
        "ts": iso(last_ts) if last_ts else None,
        "received_at": iso(received_at) if received_at else None,
        "data": row["state__last_data"],
        "position": (
            {
                "lat": row["state__latitude"],
                "lon": row["state__longitude"],
                "ts": iso(position_ts),
            }
            if position_ts
            else None
        ),
        "point_count": row["state__point_count"] or 0,
    }
