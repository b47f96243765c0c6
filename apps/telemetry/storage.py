"""Writing prepared telemetry rows and moving the latest state forward, per database.

PostgreSQL, batches of ``COPY_THRESHOLD`` rows or more: a point newer than its device's
latest stored point (from ``device_state``) cannot be a repeat, so those points are copied
straight into ``telemetry`` with COPY, PostgreSQL's fastest write. The rest (history
arriving late, resends after a lost acknowledgement) go through a temporary table and
``INSERT … ON CONFLICT DO NOTHING``, which drops repeats; so do all points if the straight
copy meets a repeat after all (a concurrent batch stored the same point first). Small
batches and SQLite use one multi-row ``INSERT … ON CONFLICT DO NOTHING``.

Every path knows exactly which rows were new, and the latest state of each device is
moved forward from those rows only. Callers run this inside one transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import psycopg
import psycopg.errors
from django.db import connection, transaction

from quantumfleet.database import bound_cursor, rows_where_in

# Below this many rows a VALUES list costs fewer round trips than a COPY.
COPY_THRESHOLD = 64
# Rows per write into a COPY: about 16 KB, enough to keep the database busy meanwhile.
COPY_CHUNK_ROWS = 64
# Keeps one statement under SQLite's 32,766 bound parameters (and PostgreSQL's 65,535).
VALUES_CHUNK = 1000
STATE_CHUNK = VALUES_CHUNK // 10
TELEMETRY_COLUMNS = "tenant_id, device_id, ts, received_at, data"


class Row(NamedTuple):
    """A validated point, ready to write. A tuple: made once per point, on the hot path."""

    tenant_id: int
    device_id: int
    ts: datetime
    received_at: datetime
    data: dict[str, Any]
    data_json: str
    latitude: float | None
    longitude: float | None


Key = tuple[int, datetime]


def write_rows(rows: Iterable[Row], *, device_ids: Collection[int], expected: int) -> set[Key]:
    """Insert rows whose (device, ts) keys are unique among them; return the new keys.

    Committed before it returns; a RuntimeError inside a caller's transaction, where
    "returned" would not mean "committed". ``device_ids`` covers every row's device and
    ``expected`` is about how many rows come: together they choose the path up front.

    Errors of the psycopg cursors used here leave as Django's, as those of Django's own
    cursors do: a lost database is an ``OperationalError`` that callers retry, and the
    broken connection is marked for ``close_old_connections`` to replace.
    """
    with connection.wrap_database_errors:
        postgres = connection.vendor == "postgresql"
        if postgres and expected < COPY_THRESHOLD:
            refuse_open_transaction()
            # A single statement commits on its own: no BEGIN and COMMIT round trips,
            # which are most of the cost of one HTTP point.
            return insert_rows_in_one_statement(sort_by_key(rows))

        with transaction.atomic(durable=True):
            inserted = copy_rows(rows, device_ids) if postgres else insert_rows(sort_by_key(rows))
            update_device_states(inserted)
        return {(row.device_id, row.ts) for row in inserted}


def refuse_open_transaction() -> None:
    """Raise RuntimeError inside a caller's transaction, as a durable atomic block does.

    The same rule as Django's durable blocks, including their exemption for the blocks a
    test case wraps around each test; entering an empty durable block would instead cost
    three round trips to the database.
    """
    blocks = connection.atomic_blocks
    if blocks and not getattr(blocks[-1], "_from_testcase", False):
        raise RuntimeError("Telemetry is stored outside any transaction, to commit on return.")


def sort_by_key(rows: Iterable[Row]) -> list[Row]:
    """Rows in key order, so that concurrent batches take row locks in the same order."""
    return sorted(rows, key=lambda row: (row.tenant_id, row.device_id, row.ts))


# --- Small batches ----------------------------------------------------------------------------

# The points, their insertion, and the move of each device's state, in one statement. The
# state is computed from the points the insertion reports as new; their data comes from
# the parameter, since rows written by one part of a statement are not visible to another.
INSERT_IN_ONE_STATEMENT = f"""
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%s::text::jsonb) AS incoming(
        tenant_id bigint, device_id bigint, ts timestamptz, received_at timestamptz,
        data jsonb, latitude float8, longitude float8)
), inserted AS (
    INSERT INTO telemetry ({TELEMETRY_COLUMNS})
    SELECT {TELEMETRY_COLUMNS} FROM incoming ORDER BY tenant_id, device_id, ts
    ON CONFLICT DO NOTHING
    RETURNING device_id, ts
), changes AS (
    SELECT
        incoming.device_id,
        min(incoming.tenant_id) AS tenant_id,
        max(incoming.ts) AS last_ts,
        (array_agg(incoming.received_at ORDER BY incoming.ts DESC))[1] AS received_at,
        (array_agg(incoming.data ORDER BY incoming.ts DESC))[1]::json AS data,
        (array_agg(incoming.ts ORDER BY incoming.ts DESC)
            FILTER (WHERE incoming.latitude IS NOT NULL))[1] AS position_ts,
        (array_agg(incoming.latitude ORDER BY incoming.ts DESC)
            FILTER (WHERE incoming.latitude IS NOT NULL))[1] AS latitude,
        (array_agg(incoming.longitude ORDER BY incoming.ts DESC)
            FILTER (WHERE incoming.latitude IS NOT NULL))[1] AS longitude,
        count(*) AS point_count
    FROM incoming JOIN inserted USING (device_id, ts)
    GROUP BY incoming.device_id
), state AS (
    INSERT INTO device_state ({{state_columns}})
    SELECT device_id, tenant_id, last_ts, received_at, data, position_ts, latitude,
        longitude, point_count, received_at
    FROM changes ORDER BY device_id
    {{on_conflict}}
)
SELECT device_id, ts FROM inserted
"""


def insert_rows_in_one_statement(rows: Sequence[Row]) -> set[Key]:
    """PostgreSQL: insert a small batch and move the device states, atomically."""
    if not rows:
        return set()
    records = [
        {
            "tenant_id": row.tenant_id,
            "device_id": row.device_id,
            "ts": row.ts,
            "received_at": row.received_at,
            "data": orjson.Fragment(row.data_json),
            "latitude": row.latitude,
            "longitude": row.longitude,
        }
        for row in rows
    ]
    with bound_cursor() as cursor:
        cursor.execute(ONE_STATEMENT_SQL, [orjson.dumps(records).decode()])
        return set(cursor.fetchall())


# --- SQLite -------------------------------------------------------------------------------


def insert_rows(rows: Sequence[Row]) -> list[Row]:
    by_key = {(row.device_id, db_datetime(row.ts)): row for row in rows}
    inserted = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), VALUES_CHUNK):
            chunk = rows[start : start + VALUES_CHUNK]
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
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
            inserted += [by_key[(device_id, db_datetime(ts))] for device_id, ts in cursor]
    return inserted


def db_datetime(value: Any) -> Any:
    """A datetime as this database takes and returns it, so that keys compare equal."""
    if isinstance(value, str):
        return value
    return connection.ops.adapt_datetimefield_value(value)


# --- Large batches on PostgreSQL -------------------------------------------------------------


def copy_rows(rows: Iterable[Row], device_ids: Collection[int]) -> list[Row]:
    newest = latest_stored_times(device_ids)
    known: list[Row] = []
    copied: list[Row] = []
    rows = iter(rows)
    try:
        with transaction.atomic():
            copy_fresh_rows(rows, newest, copied, known)
    except psycopg.errors.UniqueViolation:
        # A concurrent batch stored one of these points first: none of the copy was kept, so
        # what was copied and what is left go the careful way.
        known += copied + list(rows)
        copied = []
    if known:
        copied += copy_skipping_repeats(sort_by_key(known))
    return copied


def copy_fresh_rows(
    rows: Iterator[Row], newest: dict[int, datetime], copied: list[Row], known: list[Row]
) -> None:
    """COPY rows newer than their device's latest point straight into telemetry.

    Written in chunks while later rows are still being read, so that the database works
    in parallel with the validation. Older rows are put aside in ``known``.
    """
    statement = f"COPY telemetry ({TELEMETRY_COLUMNS}) FROM STDIN"
    with bound_cursor() as cursor, cursor.copy(statement) as copy:
        chunk: list[Row] = []
        for row in rows:
            latest = newest.get(row.device_id)
            if latest is not None and row.ts <= latest:
                known.append(row)
                continue
            chunk.append(row)
            if len(chunk) == COPY_CHUNK_ROWS:
                copy.write(copy_text(chunk))
                copied += chunk
                chunk = []
        if chunk:
            copy.write(copy_text(chunk))
            copied += chunk


def latest_stored_times(device_ids: Collection[int]) -> dict[int, datetime]:
    """Each device's latest stored time, from its state.

    Not locked: a concurrent batch that stores the same point first makes this batch's
    copy fail on the repeated key, and the whole batch then takes the careful path.
    """
    rows = rows_where_in(
        "SELECT device_id, last_ts FROM device_state WHERE {}", "device_id", device_ids, "bigint"
    )
    return {row[0]: row[1] for row in rows}


def copy_text(rows: Iterable[Row]) -> bytes:
    """Rows in COPY's text format. JSON text has no raw tabs or newlines, only backslashes
    to double."""
    received: dict[datetime, str] = {}
    lines = []
    for row in rows:
        received_text = received.get(row.received_at)
        if received_text is None:
            received_text = received[row.received_at] = row.received_at.isoformat()
        data = row.data_json.replace("\\", "\\\\")
        lines.append(
            f"{row.tenant_id}\t{row.device_id}\t{row.ts.isoformat()}\t{received_text}\t{data}\n"
        )
    return "".join(lines).encode()


def copy_skipping_repeats(rows: Sequence[Row]) -> list[Row]:
    with bound_cursor() as cursor:
        # One per database session, emptied after each use; a rollback empties it too.
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS telemetry_incoming "
            "(tenant_id bigint, device_id bigint, ts timestamptz, received_at timestamptz, "
            "data jsonb)"
        )
        statement = f"COPY telemetry_incoming ({TELEMETRY_COLUMNS}) FROM STDIN"
        with cursor.copy(statement) as copy:
            copy.write(copy_text(rows))
        cursor.execute(
            f"INSERT INTO telemetry ({TELEMETRY_COLUMNS}) "
            f"SELECT {TELEMETRY_COLUMNS} FROM telemetry_incoming "
            "ORDER BY tenant_id, device_id, ts "
            "ON CONFLICT DO NOTHING RETURNING device_id, ts"
        )
        new_keys = set(cursor.fetchall())
        cursor.execute("TRUNCATE telemetry_incoming")
    return [row for row in rows if (row.device_id, row.ts) in new_keys]


# --- Latest state ---------------------------------------------------------------------------


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


STATE_COLUMNS = (
    "device_id, tenant_id, last_ts, last_received_at, last_data, "
    "position_ts, latitude, longitude, point_count, updated_at"
)
# Moves state forward only: an older point (history uploaded late) changes the count but
# not the latest values. Every right-hand side reads the row as it was before the update.
ON_CONFLICT_MOVE_FORWARD = """
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
""".format(
    newer_position=(
        "(excluded.position_ts IS NOT NULL AND (device_state.position_ts IS NULL "
        "OR excluded.position_ts > device_state.position_ts))"
    )
)


ONE_STATEMENT_SQL = INSERT_IN_ONE_STATEMENT.format(
    state_columns=STATE_COLUMNS, on_conflict=ON_CONFLICT_MOVE_FORWARD
)


def update_device_states(inserted: Iterable[Row]) -> None:
    changes = state_changes(inserted)
    if not changes:
        return
    # Device order keeps concurrent batches from locking state rows in opposite orders.
    ordered = [changes[device_id] for device_id in sorted(changes)]
    if connection.vendor == "postgresql":
        update_device_states_postgresql(ordered)
    else:
        update_device_states_by_values(ordered)


def update_device_states_postgresql(changes: Sequence[StateChange]) -> None:
    """One statement, the changes sent as one JSON document of records.

    A JSON document costs psycopg one orjson call, where arrays of timestamps cost it a
    Python loop per element; the newest data goes in as the JSON text already made for
    the COPY. The statement reads no table, so its prepared plan cannot go stale as the
    telemetry partitions grow.
    """
    records = [
        {
            "device_id": change.newest.device_id,
            "tenant_id": change.newest.tenant_id,
            "last_ts": change.newest.ts,
            "received_at": change.newest.received_at,
            "data": orjson.Fragment(change.newest.data_json),
            "position_ts": change.positioned.ts if change.positioned else None,
            "latitude": change.positioned.latitude if change.positioned else None,
            "longitude": change.positioned.longitude if change.positioned else None,
            "point_count": change.count,
        }
        for change in changes
    ]
    with bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO device_state ({STATE_COLUMNS}) "
            "SELECT change.device_id, change.tenant_id, change.last_ts, change.received_at, "
            "change.data::json, change.position_ts, change.latitude, change.longitude, "
            "change.point_count, change.received_at "
            "FROM jsonb_to_recordset(%s::text::jsonb) AS change(device_id bigint, "
            "tenant_id bigint, last_ts timestamptz, received_at timestamptz, data jsonb, "
            "position_ts timestamptz, latitude float8, longitude float8, point_count bigint) "
            "ORDER BY change.device_id "
            f"{ON_CONFLICT_MOVE_FORWARD}",
            [orjson.dumps(records).decode()],
        )


def update_device_states_by_values(changes: Sequence[StateChange]) -> None:
    rows = []
    for change in changes:
        newest, positioned = change.newest, change.positioned
        rows.append(
            (
                newest.device_id,
                newest.tenant_id,
                db_datetime(newest.ts),
                db_datetime(newest.received_at),
                newest.data_json,
                db_datetime(positioned.ts) if positioned else None,
                positioned.latitude if positioned else None,
                positioned.longitude if positioned else None,
                change.count,
                db_datetime(newest.received_at),
            )
        )
    with connection.cursor() as cursor:
        for start in range(0, len(rows), STATE_CHUNK):
            chunk = rows[start : start + STATE_CHUNK]
            placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO device_state ({STATE_COLUMNS}) VALUES {placeholders} "
                f"{ON_CONFLICT_MOVE_FORWARD}",
                [value for row in chunk for value in row],
            )
