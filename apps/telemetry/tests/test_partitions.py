"""Time partitions and retention on PostgreSQL; row retention on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apps.telemetry import partitions
from apps.telemetry.models import Telemetry
from apps.telemetry.services import Point, ingest_points
from apps.telemetry.tasks import maintain_partitions

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions exist on PostgreSQL only"
)
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite retention")

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 8, 0, tzinfo=UTC)


def store(device, *instants: datetime) -> None:
    result = ingest_points([Point(device.tenant_id, device.pk, ts, {"v": 1}) for ts in instants])
    assert result.stored == len(instants)


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608  (a partition name)
        return int(cursor.fetchone()[0])


def names() -> list[str]:
    return [partition.name for partition in partitions.list_partitions()]


@postgres_only
class TestPartitions:
    def test_the_migration_made_a_partitioned_table_with_a_default(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'telemetry'")
            assert cursor.fetchone()[0] == "p"
        assert rows_in("telemetry_default") == 0
        current = partitions.PartitionSpan.MONTH.start_of(datetime.now(UTC))
        assert partitions.partition_name(current) in names()

    def test_upcoming_partitions_are_made_once(self):
        first = partitions.ensure_upcoming_partitions(NOW, ahead=2)
        second = partitions.ensure_upcoming_partitions(NOW, ahead=2)

        assert first == ["telemetry_p20260601", "telemetry_p20260701", "telemetry_p20260801"]
        assert second == []

    def test_a_point_with_no_partition_is_stored_and_later_adopted(self, device):
        store(device, at(2003, 4), at(2003, 4, 20), at(2011, 9))
        assert rows_in("telemetry_default") == 3

        created, moved = partitions.adopt_default_rows()

        assert (created, moved) == (["telemetry_p20030401", "telemetry_p20110901"], 3)
        assert rows_in("telemetry_default") == 0
        assert rows_in("telemetry_p20030401") == 2
        assert Telemetry.objects.filter(device=device).count() == 3

    def test_a_partition_made_after_rows_arrived_takes_them_along(self, device):
        store(device, at(2004, 2))

        made = partitions.ensure_partition_for(at(2004, 2, 1))

        assert made is not None
        assert rows_in(made.name) == 1
        assert rows_in("telemetry_default") == 0

    def test_a_changed_span_fills_gaps_without_overlapping(self, settings):
        partitions.ensure_partition_for(at(2026, 6))
        settings.TELEMETRY_PARTITION_INTERVAL = "day"

        made = partitions.ensure_partition_for(datetime(2026, 7, 1, 3, tzinfo=UTC))
        again = partitions.ensure_partition_for(datetime(2026, 6, 30, 3, tzinfo=UTC))

        assert made is not None
        assert (made.start, made.end) == (
            datetime(2026, 7, 1, tzinfo=UTC),
            datetime(2026, 7, 2, tzinfo=UTC),
        )
        assert again is None

    def test_weeks_start_on_monday(self):
        start = partitions.PartitionSpan.WEEK.start_of(datetime(2026, 6, 18, 15, tzinfo=UTC))

        assert start == datetime(2026, 6, 15, tzinfo=UTC)

    def test_retention_drops_partitions_past_it(self, device, settings):
        settings.TELEMETRY_RETENTION_DAYS = 90
        store(device, at(2026, 1), at(2026, 5), at(2026, 6))
        partitions.adopt_default_rows()

        dropped, rewritten, _ = partitions.apply_retention(NOW)

        assert dropped == ["telemetry_p20260101"]
        assert rewritten == []
        assert sorted(t.month for t in Telemetry.objects.values_list("ts", flat=True)) == [5, 6]

    def test_no_retention_keeps_everything(self, device, settings):
        settings.TELEMETRY_RETENTION_DAYS = 0
        store(device, at(2003, 1))
        partitions.adopt_default_rows()

        assert partitions.apply_retention(NOW) == ([], [], 0)
        assert Telemetry.objects.count() == 1

    def test_a_tenant_override_rewrites_the_partition_without_its_rows(
        self, device, foreign_device, settings
    ):
        settings.TELEMETRY_RETENTION_DAYS = 0
        device.tenant.telemetry_retention_days = 30
        device.tenant.save()
        store(device, at(2026, 3), at(2026, 6, 14))
        store(foreign_device, at(2026, 3))
        partitions.adopt_default_rows()

        dropped, rewritten, _ = partitions.apply_retention(NOW)

        assert (dropped, rewritten) == ([], ["telemetry_p20260301"])
        assert "telemetry_p20260301" in names()
        assert list(Telemetry.objects.values_list("device_id", "ts").order_by("ts")) == [
            (foreign_device.pk, at(2026, 3)),
            (device.pk, at(2026, 6, 14)),
        ]
        # The swapped-in partition still refuses duplicates and takes new rows.
        again = ingest_points([Point(foreign_device.tenant_id, foreign_device.pk, at(2026, 3), {})])
        assert again.duplicates == 1

    def test_a_longer_override_keeps_a_partition_the_platform_would_drop(
        self, device, foreign_device, settings
    ):
        settings.TELEMETRY_RETENTION_DAYS = 30
        foreign_device.tenant.telemetry_retention_days = 365
        foreign_device.tenant.save()
        store(device, at(2026, 2))
        store(foreign_device, at(2026, 2))
        partitions.adopt_default_rows()

        dropped, rewritten, _ = partitions.apply_retention(NOW)

        assert (dropped, rewritten) == ([], ["telemetry_p20260201"])
        assert list(Telemetry.objects.values_list("device_id", flat=True)) == [foreign_device.pk]

    def test_the_command_and_the_celery_task_run_the_maintenance(self, device):
        store(device, at(2005, 5))
        out = StringIO()

        call_command("telemetry_maintenance", stdout=out)
        summary = maintain_partitions.apply().get()

        assert "moved 1 rows out of the default partition" in out.getvalue()
        assert "moved 0 rows" in summary
        assert rows_in("telemetry_default") == 0


@sqlite_only
def test_sqlite_retention_deletes_rows_past_each_tenants_limit(device, foreign_device, settings):
    settings.TELEMETRY_RETENTION_DAYS = 0
    device.tenant.telemetry_retention_days = 30
    device.tenant.save()
    store(device, at(2026, 3), at(2026, 6, 14))
    store(foreign_device, at(2026, 3))

    report = partitions.run_maintenance(NOW)

    assert report.deleted_rows == 1
    assert sorted(Telemetry.objects.values_list("device_id", "ts")) == sorted(
        [(foreign_device.pk, at(2026, 3)), (device.pk, at(2026, 6, 14))]
    )
