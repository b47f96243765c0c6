"""The one write path: counts, deduplication, latest state, validation, atomicity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.telemetry import storage
from apps.telemetry.models import DeviceState, Telemetry
from apps.telemetry.services import InvalidPointError, Point, ingest_points

from .conftest import T0

pytestmark = pytest.mark.django_db


def point(device, minutes: float = 0, data=None, ts=None) -> Point:
    return Point(
        device.tenant_id,
        device.pk,
        ts if ts is not None else T0 + timedelta(minutes=minutes),
        data if data is not None else {"v": minutes},
    )


class TestStoring:
    def test_it_stores_points_and_counts_them(self, device):
        result = ingest_points([point(device, 0), point(device, 1), point(device, 2)])

        assert (result.stored, result.duplicates, result.rejected) == (3, 0, 0)
        stored = Telemetry.objects.filter(device=device).order_by("ts")
        assert [row.data for row in stored] == [{"v": 0}, {"v": 1}, {"v": 2}]
        assert {row.tenant_id for row in stored} == {device.tenant_id}

    def test_data_comes_back_exactly_as_sent(self, device):
        data = {
            "gps": {"lat": -33.4, "lon": -70.6, "speed": 12.3},
            "io": {"24": 65, "239": 1},
            "text": "ñandú ✓",
            "list": [1, 2.5, None, True],
            "empty": {},
        }

        ingest_points([point(device, data=data)])

        assert Telemetry.objects.get(device=device).data == data

    def test_a_naive_time_is_taken_as_utc(self, device):
        ingest_points([point(device, ts=datetime(2025, 3, 1, 8, 30))])

        assert Telemetry.objects.get(device=device).ts == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)

    def test_a_large_batch_takes_the_bulk_path_with_the_same_results(self, device, tenant_b):
        from apps.devices.services import create_device

        other, _ = create_device(tenant=tenant_b.tenant, name="Other")
        batch = [point(device, minute) for minute in range(300)]
        batch += [point(other, minute) for minute in range(200)]
        batch += [point(device, 5, {"repeat": True})]
        assert len(batch) > storage.COPY_THRESHOLD

        result = ingest_points(batch)

        assert (result.stored, result.duplicates) == (500, 1)
        assert Telemetry.objects.filter(device=device).count() == 300
        assert Telemetry.objects.filter(device=other, tenant=tenant_b.tenant).count() == 200
        assert DeviceState.objects.get(device=device).last_ts == T0 + timedelta(minutes=299)
        assert DeviceState.objects.get(device=other).point_count == 200


class TestDuplicates:
    def test_the_same_point_twice_in_one_batch_is_stored_once(self, device):
        result = ingest_points([point(device, 0, {"first": 1}), point(device, 0, {"second": 2})])

        assert (result.stored, result.duplicates) == (1, 1)
        assert Telemetry.objects.get(device=device).data == {"first": 1}

    def test_a_resent_point_is_a_duplicate_not_an_error(self, device):
        ingest_points([point(device, 0, {"first": 1}), point(device, 1)])

        again = ingest_points([point(device, 0, {"changed": 1}), point(device, 2)])

        assert (again.stored, again.duplicates) == (1, 1)
        assert Telemetry.objects.filter(device=device).count() == 3
        assert Telemetry.objects.get(device=device, ts=T0).data == {"first": 1}

    def test_the_same_time_on_two_devices_is_two_points(self, device, foreign_device):
        result = ingest_points([point(device, 0), point(foreign_device, 0)])

        assert result.stored == 2

    def test_equal_instants_in_other_time_zones_are_duplicates(self, device):
        from zoneinfo import ZoneInfo

        santiago = T0.astimezone(ZoneInfo("America/Santiago"))

        result = ingest_points([point(device, ts=T0), point(device, ts=santiago)])

        assert (result.stored, result.duplicates) == (1, 1)


class TestLatestState:
    def test_it_follows_the_newest_point_and_counts_stored_points(self, device):
        ingest_points([point(device, 0, {"gps": {"lat": 1.0, "lon": 2.0}}), point(device, 5)])

        state = DeviceState.objects.get(device=device)
        assert state.last_ts == T0 + timedelta(minutes=5)
        assert state.last_data == {"v": 5}
        assert (state.latitude, state.longitude) == (1.0, 2.0)
        assert state.position_ts == T0
        assert state.point_count == 2
        assert state.tenant_id == device.tenant_id

    def test_late_history_does_not_move_it_back(self, device):
        ingest_points([point(device, 60, {"now": True, "gps": {"lat": 5.0, "lon": 6.0}})])

        ingest_points([point(device, 0, {"old": True, "gps": {"lat": 1.0, "lon": 2.0}})])

        state = DeviceState.objects.get(device=device)
        assert state.last_data["now"] is True
        assert (state.latitude, state.longitude) == (5.0, 6.0)
        assert state.point_count == 2

    def test_a_newer_point_without_position_keeps_the_last_position(self, device):
        ingest_points([point(device, 0, {"gps": {"lat": 1.0, "lon": 2.0}})])

        ingest_points([point(device, 1, {"io": {"1": 1}})])

        state = DeviceState.objects.get(device=device)
        assert state.last_data == {"io": {"1": 1}}
        assert (state.latitude, state.longitude, state.position_ts) == (1.0, 2.0, T0)

    @pytest.mark.parametrize(
        "gps",
        [
            {"lat": 0, "lon": 0},
            {"lat": 91, "lon": 0},
            {"lat": "1", "lon": 2},
            {"lat": True, "lon": 1},
        ],
    )
    def test_positions_that_are_not_places_are_ignored(self, device, gps):
        ingest_points([point(device, 0, {"gps": gps})])

        assert DeviceState.objects.get(device=device).position_ts is None

    def test_duplicates_leave_it_alone(self, device):
        ingest_points([point(device, 0, {"a": 1})])

        ingest_points([point(device, 0, {"b": 2})])

        state = DeviceState.objects.get(device=device)
        assert state.last_data == {"a": 1}
        assert state.point_count == 1


class TestValidation:
    @pytest.mark.parametrize(
        ("ts", "data", "field"),
        [
            (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), {}, "ts"),
            (datetime(1970, 1, 1, tzinfo=UTC), {}, "ts"),
            ("2025-01-01T00:00:00Z", {}, "ts"),
            (None, ["not", "an", "object"], "data"),
            (None, {"x": float("nan")}, "data"),
            (None, {"x": float("inf")}, "data"),
            (None, {"x": "nul\x00byte"}, "data"),
            (None, {"nul\x00key": 1}, "data"),
            (None, {"x": object()}, "data"),
            (None, {"x": "y" * (64 * 1024)}, "data"),
        ],
    )
    def test_a_bad_point_stores_nothing_of_its_batch(self, device, ts, data, field):
        bad = Point(device.tenant_id, device.pk, ts if ts is not None else T0, data)

        with pytest.raises(InvalidPointError) as raised:
            ingest_points([point(device, 1), bad, point(device, 2)])

        assert (raised.value.field, raised.value.index) == (field, 1)
        assert not Telemetry.objects.exists()
        assert not DeviceState.objects.exists()

    def test_more_than_a_day_ahead_is_refused(self, device):
        ahead = timezone.now() + timedelta(days=1, minutes=5)

        with pytest.raises(InvalidPointError, match="future"):
            ingest_points([point(device, ts=ahead)])

    def test_a_slightly_fast_clock_is_fine(self, device):
        result = ingest_points([point(device, ts=timezone.now() + timedelta(hours=23))])

        assert result.stored == 1

    def test_deep_nesting_is_refused_not_crashing(self, device):
        data: dict[str, object] = {}
        cursor = data
        for _ in range(5000):
            child: dict[str, object] = {}
            cursor["x"] = child
            cursor = child

        with pytest.raises(InvalidPointError, match="deeply"):
            ingest_points([point(device, data=data)])

    def test_streams_skip_bad_points_and_store_the_rest(self, device):
        bad = Point(device.tenant_id, device.pk, datetime(1990, 1, 1, tzinfo=UTC), {})

        result = ingest_points([point(device, 0), bad, point(device, 1)], skip_invalid=True)

        assert (result.stored, result.duplicates, result.rejected) == (2, 0, 1)
        assert [(r.index, r.field) for r in result.rejections] == [(1, "ts")]


@pytest.mark.django_db(transaction=True)
class TestAtomicity:
    def test_a_failure_after_the_insert_leaves_nothing_behind(self, device, monkeypatch):
        def fail(rows):
            raise RuntimeError("state update failed")

        monkeypatch.setattr(storage, "update_device_states", fail)

        with pytest.raises(RuntimeError):
            ingest_points([point(device, minute) for minute in range(100)])

        assert not Telemetry.objects.exists()

    def test_the_batch_is_committed_when_it_returns(self, device):
        from django.db import connection

        ingest_points([point(device, 0)])

        assert not connection.in_atomic_block
        assert Telemetry.objects.count() == 1

    def test_it_refuses_to_run_inside_a_callers_transaction(self, device):
        from django.db import transaction

        # A caller's open transaction would make "returned" differ from "committed".
        with pytest.raises(RuntimeError), transaction.atomic():
            ingest_points([point(device, 0)])


# Real commits: the database checks its foreign keys only when a transaction commits.
@pytest.mark.django_db(transaction=True)
class TestDeletion:
    def test_deleting_a_device_deletes_its_points_and_state_only(
        self, client_for, tenant_a, device, foreign_device
    ):
        ingest_points([point(device, 0), point(device, 1), point(foreign_device, 0)])

        response = client_for(tenant_a.manager).delete(f"/devices/{device.pk}")

        assert response.status_code == 204
        assert list(Telemetry.objects.values_list("device_id", flat=True)) == [foreign_device.pk]
        assert list(DeviceState.objects.values_list("device_id", flat=True)) == [foreign_device.pk]

    def test_deleting_a_tenant_deletes_its_telemetry(self, device, foreign_device):
        ingest_points([point(device, 0), point(foreign_device, 0)])

        device.tenant.delete()

        assert list(Telemetry.objects.values_list("device_id", flat=True)) == [foreign_device.pk]


class TestLargeBatches:
    """Batches big enough for PostgreSQL's COPY path (the same rules hold on SQLite)."""

    def test_new_points_history_and_repeats_in_one_batch(self, device):
        ingest_points([point(device, minute, {"first": minute}) for minute in range(100, 200)])

        batch = [point(device, minute, {"again": minute}) for minute in range(150, 200)]  # repeats
        batch += [point(device, minute, {"history": minute}) for minute in range(0, 50)]  # older
        batch += [point(device, minute, {"new": minute}) for minute in range(200, 260)]  # newer
        result = ingest_points(batch)

        assert (result.stored, result.duplicates) == (110, 50)
        assert Telemetry.objects.filter(device=device).count() == 210
        assert Telemetry.objects.get(device=device, ts=T0 + timedelta(minutes=150)).data == {
            "first": 150
        }
        state = DeviceState.objects.get(device=device)
        assert state.last_data == {"new": 259}
        assert state.point_count == 210

    def test_a_repeat_the_state_does_not_know_about_is_still_caught(self, device):
        ingest_points([point(device, minute) for minute in range(100)])
        # As if another process had stored these points and not yet moved the state.
        DeviceState.objects.filter(device=device).delete()

        result = ingest_points([point(device, minute) for minute in range(50, 150)])

        assert (result.stored, result.duplicates) == (50, 50)
        assert Telemetry.objects.filter(device=device).count() == 150
        assert DeviceState.objects.get(device=device).last_ts == T0 + timedelta(minutes=149)


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="the in-memory SQLite test database locks whole tables between connections",
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_every_point_once(device, foreign_device):
    import threading

    devices = [device, foreign_device]
    batches = [
        [point(devices[n % 2], minute, {"from": n}) for minute in range(n * 40, n * 40 + 200)]
        for n in range(6)
    ]
    results, errors = [], []

    def send(batch):
        try:
            results.append(ingest_points(batch))
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    unique = {(p.device_id, p.ts) for batch in batches for p in batch}
    assert sum(result.stored for result in results) == len(unique)
    assert sum(r.stored + r.duplicates for r in results) == sum(len(b) for b in batches)
    assert Telemetry.objects.count() == len(unique)
    for each in devices:
        state = DeviceState.objects.get(device=each)
        stored = Telemetry.objects.filter(device=each)
        assert state.point_count == stored.count()
        assert state.last_ts == stored.order_by("-ts").first().ts
