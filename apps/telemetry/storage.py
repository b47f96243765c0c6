"""Writing prepared telemetry rows and the latest state, per database.

PostgreSQL receives large batches through COPY into a temporary table and one
``INSERT … SELECT … ON CONFLICT DO NOTHING``; small batches (a single HTTP point) and
SQLite use one multi-row ``INSERT … ON CONFLICT DO NOTHING``. Either way the statement
returns the keys it inserted, and the latest state of each device is moved forward from
exactly those rows. Callers run this inside one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

# Below this many rows a VALUES list costs fewer round trips than COPY and its temp table.
COPY_THRESHOLD = 64
# Keeps one statement under SQLite's 32,766 bound parameters (and PostgreSQL's 65,535).
VALUES_CHUNK = 1000
TELEMETRY_COLUMNS = "tenant_id, device_id, ts, received_at, data"


@dataclass(frozen=True)
class Row:
    """A validated point, ready to write."""

    tenant_id: int
    device_id: int
    ts: datetime
    received_at: datetime
    data: dict[str, Any]
    data_json: str
    latitude: float | None
    longitude: float | None


def write_rows(rows: Sequence[Row]) -> int:
    """Insert rows whose (device, ts) keys are unique within the batch; return how many
    were new. Sorted first so concurrent batches lock keys in the same order."""
    ordered = sorted(rows, key=lambda row: (row.tenant_id, row.device_id, row.ts))
    if connection.vendor == "postgresql" and len(ordered) >= COPY_THRESHOLD:
        inserted_keys = copy_rows(ordered)
    else:
        inserted_keys = insert_rows(ordered)

    by_key = {(row.device_id, db_datetime(row.ts)): row for row in ordered}
    inserted = [by_key[(device_id, db_datetime(ts))] for device_id, ts in inserted_keys]
    update_device_states(inserted)
    return len(inserted)


def db_datetime(value: Any) -> Any:
    """A datetime as this database stores and returns it, so keys compare equal."""
    if isinstance(value, str):
        return value
    return connection.ops.adapt_datetimefield_value(value)


def insert_rows(rows: Sequence[Row]) -> list[tuple[int, Any]]:
    json_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    inserted: list[tuple[int, Any]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), VALUES_CHUNK):
            chunk = rows[start : start + VALUES_CHUNK]
            values = ", ".join([f"(%s, %s, %s, %s, {json_placeholder})"] * len(chunk))
            params: list[Any] = []
            for row in chunk:
                params += [
                    row.tenant_id,
                    row.device_id,
                    db_datetime(row.ts),
                    db_datetime(row.received_at),
                    row.data_json,
                ]
            cursor.execute(
                f"INSERT INTO telemetry ({TELEMETRY_COLUMNS}) VALUES {values} "
                "ON CONFLICT DO NOTHING RETURNING device_id, ts",
                params,
            )
            inserted += cursor.fetchall()
    return inserted


def copy_rows(rows: Sequence[Row]) -> list[tuple[int, Any]]:
    with connection.cursor() as cursor:
        # One per database session, emptied after each use; a rollback empties it too.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS telemetry_incoming "
            "(tenant_id bigint, device_id bigint, ts timestamptz, received_at timestamptz, "
            "data jsonb)"
        )
        with cursor.cursor.copy(
            f"COPY telemetry_incoming ({TELEMETRY_COLUMNS}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(
                    (row.tenant_id, row.device_id, row.ts, row.received_at, row.data_json)
                )
        cursor.execute(
            f"INSERT INTO telemetry ({TELEMETRY_COLUMNS}) "
            f"SELECT {TELEMETRY_COLUMNS} FROM telemetry_incoming "
            "ORDER BY tenant_id, device_id, ts "
            "ON CONFLICT DO NOTHING RETURNING device_id, ts"
        )
        inserted: list[tuple[int, Any]] = cursor.fetchall()
        cursor.execute("TRUNCATE telemetry_incoming")
    return inserted


@dataclass
class StateChange:
    """What one batch contributes to a device's latest state."""

    newest: Row
    positioned: Row | None
    count: int


def state_changes(rows: Iterable[Row]) -> dict[int, StateChange]:
    changes: dict[int, StateChange] = {}
    for row in rows:
        change = changes.get(row.device_id)
        if change is None:
            change = changes[row.device_id] = StateChange(newest=row, positioned=None, count=0)
        change.count += 1
        if row.ts > change.newest.ts:
            change.newest = row
        if row.latitude is not None and (
            change.positioned is None or row.ts > change.positioned.ts
        ):
            change.positioned = row
    return changes


# Moves state forward only: an older point (history uploaded late) changes the count but
# not the latest values. Every right-hand side reads the row as it was before the update.
UPSERT_STATE = """
INSERT INTO device_state (
    device_id, tenant_id, last_ts, last_received_at, last_data,
    position_ts, latitude, longitude, point_count, updated_at
) VALUES {values}
ON CONFLICT (device_id) DO UPDATE SET
    last_data = CASE WHEN excluded.last_ts > device_state.last_ts
        THEN excluded.last_data ELSE device_state.last_data END,
    last_received_at = CASE WHEN excluded.last_ts > device_state.last_ts
        THEN excluded.last_received_at ELSE device_state.last_received_at END,
    last_ts = CASE WHEN excluded.last_ts > device_state.last_ts
        THEN excluded.last_ts ELSE device_state.last_ts END,
    latitude = CASE WHEN {newer_position} THEN excluded.latitude ELSE device_state.latitude END,
    longitude = CASE WHEN {newer_position} THEN excluded.longitude ELSE device_state.longitude END,
    position_ts = CASE WHEN {newer_position}
        THEN excluded.position_ts ELSE device_state.position_ts END,
    point_count = device_state.point_count + excluded.point_count,
    updated_at = excluded.updated_at
"""
NEWER_POSITION = (
    "(excluded.position_ts IS NOT NULL AND (device_state.position_ts IS NULL "
    "OR excluded.position_ts > device_state.position_ts))"
)


def update_device_states(inserted: Iterable[Row]) -> None:
    changes = state_changes(inserted)
    if not changes:
        return

    json_placeholder = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    row_placeholder = f"(%s, %s, %s, %s, {json_placeholder}, %s, %s, %s, %s, %s)"
    params: list[Any] = []
    # Device order keeps concurrent batches from locking state rows in opposite orders.
    for device_id in sorted(changes):
        change = changes[device_id]
        newest, positioned = change.newest, change.positioned
        params += [
            device_id,
            newest.tenant_id,
            db_datetime(newest.ts),
            db_datetime(newest.received_at),
            newest.data_json,
            db_datetime(positioned.ts) if positioned else None,
            positioned.latitude if positioned else None,
            positioned.longitude if positioned else None,
            change.count,
            db_datetime(newest.received_at),
        ]
    sql = UPSERT_STATE.format(
        values=", ".join([row_placeholder] * len(changes)), newer_position=NEWER_POSITION
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
