"""Decoded AVL records turned into points: which time each record is stored at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from django.utils import timezone

from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.server import KnownDevice, packet_points
from ingest_daemons.teltonika.simulator import Route, make_record

DEVICE = KnownDevice(7, 3, "356307042441013", "FMC650", True)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def milliseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def record_at(timestamp_ms: int) -> codec.AvlRecord:
    return make_record(Route(54.6676016, 25.2562916, 50.0), timestamp_ms)


def points_of(*timestamps_ms: int):
    before = timezone.now()
    points = packet_points(DEVICE, codec.CODEC_8E, tuple(map(record_at, timestamps_ms)))
    return before, points


def test_a_plausible_time_is_kept_to_the_millisecond():
    sent = datetime(2026, 11, 1, 8, 0, 0, 123_000, tzinfo=UTC)

    _, [point] = points_of(milliseconds(sent))

    assert point.ts == sent
    assert point.ts.tzinfo is UTC
    assert "device_ts_ms" not in point.data
    assert (point.tenant_id, point.device_id) == (3, 7)


def test_the_first_millisecond_of_2000_is_plausible_and_the_one_before_is_not():
    first = datetime(2000, 1, 1, tzinfo=UTC)

    before, [kept, replaced] = points_of(milliseconds(first), milliseconds(first) - 1)

    assert kept.ts == first
    assert replaced.ts >= before
    assert replaced.data["device_ts_ms"] == milliseconds(first) - 1


def test_records_of_an_unset_clock_get_distinct_arrival_times():
    before, points = points_of(5_000, 6_000, 7_000)

    assert [point.data["device_ts_ms"] for point in points] == [5_000, 6_000, 7_000]
    assert all(point.ts >= before for point in points)
    assert [later.ts - earlier.ts for earlier, later in pairwise(points)] == [
        timedelta(microseconds=1)
    ] * 2


def test_a_time_more_than_a_day_ahead_is_replaced_and_a_day_ahead_is_not():
    now_ms = milliseconds(timezone.now())
    far = now_ms + 2 * 86_400_000
    near = now_ms + 86_400_000 - 60_000

    before, [replaced, kept] = points_of(far, near)

    assert replaced.ts >= before
    assert replaced.ts < before + timedelta(minutes=1)
    assert replaced.data["device_ts_ms"] == far
    assert milliseconds(kept.ts) == near
    assert "device_ts_ms" not in kept.data


def test_the_largest_timestamp_a_packet_can_carry_does_not_overflow():
    largest = 2**64 - 1

    before, [point] = points_of(largest)

    assert point.ts >= before
    assert point.data["device_ts_ms"] == largest
