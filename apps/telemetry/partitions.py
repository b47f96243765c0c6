"""Time partitions of the telemetry table on PostgreSQL, and retention.

``telemetry`` is range-partitioned by ``ts``. A default partition catches points whose
time has no partition yet (a device with a wrong clock, history from long ago), so no
point is ever refused for its timestamp. The maintenance job (``manage.py
telemetry_maintenance``, also run by Celery beat) creates partitions ahead of time, moves
rows out of the default partition into partitions of their own, and applies retention by
dropping or rewriting whole partitions, never by deleting rows one by one.

On SQLite the table is a plain table and retention deletes rows: the embedded engine has
no partitions, and a development database is small enough for that.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F
from django.db.models.functions import Greatest

logger = logging.getLogger(__name__)

PARENT = "telemetry"
DEFAULT_PARTITION = "telemetry_default"

# Column order and types of the partitioned table; they match the Django model.
TABLE_DDL = f"""
CREATE TABLE {PARENT} (
    tenant_id bigint NOT NULL,
    device_id bigint NOT NULL,
    ts timestamp with time zone NOT NULL,
    received_at timestamp with time zone NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (tenant_id, device_id, ts)
) PARTITION BY RANGE (ts)
"""

BOUND_PATTERN = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


class PartitionSpan(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    def start_of(self, instant: datetime) -> datetime:
        day = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if self is PartitionSpan.DAY:
            return day
        if self is PartitionSpan.WEEK:
            return day - timedelta(days=day.weekday())
        return day.replace(day=1)

    def next_start(self, start: datetime) -> datetime:
        if self is PartitionSpan.DAY:
            return start + timedelta(days=1)
        if self is PartitionSpan.WEEK:
            return start + timedelta(days=7)
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime

    def covers(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass
class MaintenanceReport:
    created: list[str]
    adopted_rows: int
    dropped: list[str]
    rewritten: list[str]
    deleted_rows: int

    def summary(self) -> str:
        return (
            f"created {len(self.created)} partitions, moved {self.adopted_rows} rows out of "
            f"the default partition, dropped {len(self.dropped)}, rewrote {len(self.rewritten)}, "
            f"deleted {self.deleted_rows} rows"
        )


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def configured_span() -> PartitionSpan:
    return PartitionSpan(settings.TELEMETRY_PARTITION_INTERVAL)


def create_partitioned_table(schema_editor: Any) -> None:
    """Replace the plain table Django created with the partitioned one (PostgreSQL)."""
    schema_editor.execute(f"DROP TABLE {PARENT}")
    schema_editor.execute(TABLE_DDL)
    schema_editor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT")
    ensure_upcoming_partitions(datetime.now(UTC), settings.TELEMETRY_PARTITIONS_AHEAD)


def list_partitions() -> list[Partition]:
    """The range partitions of the telemetry table, oldest first (the default excluded)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname, pg_get_expr(child.relpartbound, child.oid)
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = %s
            """,
            [PARENT],
        )
        rows = cursor.fetchall()

    partitions = []
    for name, bound in rows:
        match = BOUND_PATTERN.search(bound or "")
        if match:
            start, end = (datetime.fromisoformat(value) for value in match.groups())
            partitions.append(Partition(name, start.astimezone(UTC), end.astimezone(UTC)))
    return sorted(partitions, key=lambda partition: partition.start)


def partition_name(start: datetime) -> str:
    return f"{PARENT}_p{start:%Y%m%d}"


def free_range_around(
    instant: datetime, span: PartitionSpan, existing: list[Partition]
) -> tuple[datetime, datetime]:
    """The span's natural range around ``instant``, narrowed so it overlaps no partition.

    Partitions made under another span setting stay as they are; new ones fill the gaps.
    """
    start = span.start_of(instant)
    end = span.next_start(start)
    for partition in existing:
        if partition.end <= instant:
            start = max(start, partition.end)
        elif partition.start > instant:
            end = min(end, partition.start)
    return start, end


def ensure_partition_for(instant: datetime) -> Partition | None:
    """Create the partition that ``instant`` belongs in, unless one exists. PostgreSQL only."""
    existing = list_partitions()
    if any(partition.covers(instant) for partition in existing):
        return None
    start, end = free_range_around(instant, configured_span(), existing)
    partition = Partition(partition_name(start), start, end)
    create_partition(partition)
    return partition


@transaction.atomic
def create_partition(partition: Partition) -> int:
    """Create a partition, moving into it any rows the default partition holds for its range.

    Returns how many rows were moved. Attaching a range checks the default partition, so
    rows already there must leave it first, in the same transaction.
    """
    bounds = [partition.start, partition.end]
    with connection.cursor() as cursor:
        # Writers wait for the few milliseconds this takes instead of racing the move.
        cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE ts >= %s AND ts < %s)",
            bounds,
        )
        (has_rows,) = cursor.fetchone()
        if not has_rows:
            cursor.execute(
                f"CREATE TABLE {partition.name} PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)",
                bounds,
            )
            logger.info("telemetry.partition_created", extra={"partition": partition.name})
            return 0

        cursor.execute(
            f"CREATE TABLE {partition.name} "
            f"(LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {DEFAULT_PARTITION} WHERE ts >= %s AND ts < %s RETURNING *
            )
            INSERT INTO {partition.name} SELECT * FROM moved
            """,
            bounds,
        )
        moved: int = cursor.rowcount
        attach_with_known_bounds(cursor, partition)
    logger.info(
        "telemetry.partition_created", extra={"partition": partition.name, "moved_rows": moved}
    )
    return moved


def attach_with_known_bounds(cursor: Any, partition: Partition) -> None:
    # A CHECK constraint matching the bounds lets ATTACH skip scanning the new table.
    check = f"{partition.name}_bounds"
    bounds = [partition.start, partition.end]
    cursor.execute(
        f"ALTER TABLE {partition.name} ADD CONSTRAINT {check} CHECK (ts >= %s AND ts < %s)",
        bounds,
    )
    cursor.execute(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {partition.name} FOR VALUES FROM (%s) TO (%s)",
        bounds,
    )
    cursor.execute(f"ALTER TABLE {partition.name} DROP CONSTRAINT {check}")


def ensure_upcoming_partitions(now: datetime, ahead: int) -> list[str]:
    """Partitions for the current span and ``ahead`` more, so inserts never wait on DDL."""
    span = configured_span()
    created = []
    instant = span.start_of(now)
    for _ in range(ahead + 1):
        partition = ensure_partition_for(instant)
        if partition is not None:
            created.append(partition.name)
        instant = span.next_start(instant)
    return created


def adopt_default_rows() -> tuple[list[str], int]:
    """Give every span that has rows in the default partition a partition of its own."""
    created: list[str] = []
    moved = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT min(ts) FROM {DEFAULT_PARTITION}")
            (oldest,) = cursor.fetchone()
        if oldest is None:
            return created, moved
        existing = list_partitions()
        start, end = free_range_around(oldest, configured_span(), existing)
        partition = Partition(partition_name(start), start, end)
        moved += create_partition(partition)
        created.append(partition.name)


def retention_days_by_tenant() -> tuple[int | None, dict[int, int | None]]:
    """The global retention and each tenant's effective one; None means keep forever."""
    from apps.tenants.models import Tenant

    global_days = settings.TELEMETRY_RETENTION_DAYS or None
    effective = {
        tenant_id: (override if override is not None else global_days) or None
        for tenant_id, override in Tenant.objects.values_list("id", "telemetry_retention_days")
    }
    return global_days, effective


def apply_retention(now: datetime) -> tuple[list[str], list[str], int]:
    """Drop or rewrite partitions past every tenant's retention. Returns what it did.

    A partition whose whole range is older than the longest retention is dropped. One that
    only some tenants have outlived is rewritten without their rows and swapped in, which
    leaves no dead rows behind as a mass DELETE would.
    """
    _, by_tenant = retention_days_by_tenant()
    if not is_partitioned():
        return [], [], delete_expired_rows(now, by_tenant)

    dropped: list[str] = []
    rewritten: list[str] = []
    if not by_tenant:
        return dropped, rewritten, 0
    # Rows belong to tenants, so the longest retention among them decides what can go.
    keep_forever = any(days is None for days in by_tenant.values())
    longest = max(days or 0 for days in by_tenant.values())
    for partition in list_partitions():
        if partition.end > now:
            continue
        if not keep_forever and partition.end <= now - timedelta(days=longest):
            drop_partition(partition)
            dropped.append(partition.name)
            continue
        expired = [
            tenant_id
            for tenant_id, days in by_tenant.items()
            if days is not None and partition.end <= now - timedelta(days=days)
        ]
        if expired and rewrite_partition_without(partition, expired):
            rewritten.append(partition.name)
    return dropped, rewritten, 0


@transaction.atomic
def drop_partition(partition: Partition) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {partition.name}")
        uncount_rows(cursor, partition.name)
        cursor.execute(f"DROP TABLE {partition.name}")
    logger.info("telemetry.partition_dropped", extra={"partition": partition.name})


def uncount_rows(cursor: Any, table: str, condition: str = "", params: Sequence[Any] = ()) -> None:
    """Lower each device's stored-point count by its rows in ``table`` about to be removed.

    ``device_state.point_count`` is what the stored-points quota adds up, so the rows
    retention removes must leave it.
    """
    where = f"WHERE {condition}" if condition else ""
    cursor.execute(
        "UPDATE device_state AS state "
        "SET point_count = GREATEST(state.point_count - removed.points, 0) "
        f"FROM (SELECT device_id, count(*) AS points FROM {table} {where} GROUP BY device_id) "
        "AS removed WHERE state.device_id = removed.device_id",
        list(params),
    )


@transaction.atomic
def rewrite_partition_without(partition: Partition, tenant_ids: Iterable[int]) -> bool:
    """Swap the partition for a copy without these tenants' rows; False if it had none."""
    expired = list(tenant_ids)
    with connection.cursor() as cursor:
        # Readers go on; writers to this old range wait until the swap is done.
        cursor.execute(f"LOCK TABLE {partition.name} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {partition.name} WHERE tenant_id = ANY(%s))",
            [expired],
        )
        (has_expired_rows,) = cursor.fetchone()
        if not has_expired_rows:
            return False

        replacement = Partition(f"{partition.name}_next", partition.start, partition.end)
        cursor.execute(
            f"CREATE TABLE {replacement.name} "
            f"(LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"INSERT INTO {replacement.name} SELECT * FROM {partition.name} "
            "WHERE tenant_id <> ALL(%s)",
            [expired],
        )
        cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {partition.name}")
        uncount_rows(cursor, partition.name, "tenant_id = ANY(%s)", [expired])
        cursor.execute(f"DROP TABLE {partition.name}")
        attach_with_known_bounds(cursor, replacement)
        cursor.execute(f"ALTER TABLE {replacement.name} RENAME TO {partition.name}")
        # The primary key index made on attach carries the temporary name; keep it tidy.
        cursor.execute(
            f"ALTER INDEX IF EXISTS {replacement.name}_pkey RENAME TO {partition.name}_pkey"
        )
    logger.info(
        "telemetry.partition_rewritten",
        extra={"partition": partition.name, "expired_tenants": expired},
    )
    return True


def delete_expired_rows(now: datetime, by_tenant: dict[int, int | None]) -> int:
    """SQLite's retention: delete old rows tenant by tenant."""
    from apps.telemetry.models import DeviceState, Telemetry

    deleted = 0
    for tenant_id, days in by_tenant.items():
        if days is None:
            continue
        expired = Telemetry.objects.filter(tenant_id=tenant_id, ts__lt=now - timedelta(days=days))
        with transaction.atomic():
            removed = expired.values("device_id").annotate(points=Count("*"))
            for row in removed:
                DeviceState.objects.filter(device_id=row["device_id"]).update(
                    point_count=Greatest(F("point_count") - row["points"], 0)
                )
            count, _ = expired.delete()
        deleted += count
    return deleted


def run_maintenance(now: datetime | None = None) -> MaintenanceReport:
    """Create upcoming partitions, adopt stray rows, apply retention."""
    now = now or datetime.now(UTC)
    if not is_partitioned():
        _, _, deleted = apply_retention(now)
        return MaintenanceReport([], 0, [], [], deleted)

    created = ensure_upcoming_partitions(now, settings.TELEMETRY_PARTITIONS_AHEAD)
    adopted, moved = adopt_default_rows()
    dropped, rewritten, _ = apply_retention(now)
    report = MaintenanceReport(created + adopted, moved, dropped, rewritten, 0)
    logger.info("telemetry.maintenance", extra={"summary": report.summary()})
    return report
