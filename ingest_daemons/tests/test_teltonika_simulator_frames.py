"""The simulator's cheap frames are the codec's frames of the same records, byte for byte."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.simulator import (
    Route,
    SimulatedTracker,
    encoded_record,
    make_record,
)


def codec_frame(route: Route, timestamps_ms: list[int], interval_s: float) -> bytes:
    records = []
    for timestamp_ms in timestamps_ms:
        records.append(make_record(route, timestamp_ms))
        route.advance(interval_s)
    return codec.encode_avl_frame(codec.CODEC_8E, records)


@given(
    latitude=st.floats(min_value=-89.0, max_value=89.0),
    longitude=st.floats(min_value=-179.0, max_value=179.0),
    speed_kmh=st.floats(min_value=0.0, max_value=250.0),
    odometer_m=st.integers(min_value=0, max_value=2**31),
    timestamp_ms=st.integers(min_value=0, max_value=2**63),
)
def test_one_record_matches_the_codec(latitude, longitude, speed_kmh, odometer_m, timestamp_ms):
    route = Route(latitude, longitude, speed_kmh, odometer_m)

    frame = codec.frame_data_field(
        bytes((codec.CODEC_8E, 1)) + encoded_record(route, timestamp_ms) + b"\x01"
    )

    assert frame == codec.encode_avl_frame(codec.CODEC_8E, [make_record(route, timestamp_ms)])


@pytest.mark.parametrize("speed_kmh", [0.0, 18.5, 130.0])
def test_a_packet_matches_the_codec_and_moves_the_route_alike(speed_kmh):
    tracker = SimulatedTracker(
        "127.0.0.1", 5072, "356307042123456", Route(-33.41, -70.61, speed_kmh)
    )
    route_before = copy.copy(tracker.route)

    frame = tracker.next_frame(10, interval_s=2.0)

    packet = codec.decode_avl_frame(frame)
    timestamps = [record.timestamp_ms for record in packet.records]
    assert len(set(timestamps)) == 10
    assert frame == codec_frame(route_before, timestamps, 2.0)
    assert tracker.route == route_before
    assert packet.records[0].io[240] == int(speed_kmh > 0)
