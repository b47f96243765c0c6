"""A device that connects again closes its older connection, on this daemon or another."""

from __future__ import annotations

import pytest

from apps.devices.models import DeviceSession
from ingest_daemons.tests.conftest import IMEI, PlainTracker, start_daemon, stop_daemon
from ingest_daemons.tests.test_teltonika_daemon import T0_MS, frame, stored, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def sessions(device) -> list[DeviceSession]:
    return list(DeviceSession.objects.filter(device=device).order_by("pk"))


def test_a_new_connection_to_the_same_daemon_closes_the_old_one(
    daemon, plain_tracker, tracker_device
):
    old = plain_tracker()
    assert old.handshake(IMEI) == b"\x01"
    old.send(frame(2))
    assert old.ack() == 2

    new = plain_tracker()
    assert new.handshake(IMEI) == b"\x01"

    assert old.is_closed_by_server()
    new.send(frame(3, start_ms=T0_MS + 60_000))
    assert new.ack() == 3
    assert stored(tracker_device.id) == 5
    assert wait_for(lambda: [s.close_reason for s in sessions(tracker_device)] == ["replaced", ""])


def test_a_new_connection_to_another_daemon_closes_the_old_one(
    daemon, daemon_options, tracker_device
):
    other = start_daemon(daemon_options)
    old = PlainTracker(daemon.port)
    new = None
    try:
        assert old.handshake(IMEI) == b"\x01"
        old.send(frame(2))
        assert old.ack() == 2
        # Several scans for new sessions pass; the connection's own session closes nothing.
        assert not old.is_closed_by_server(timeout=daemon_options.command_poll_seconds * 5)

        new = PlainTracker(other.port)
        assert new.handshake(IMEI) == b"\x01"

        assert old.is_closed_by_server()
        assert wait_for(lambda: tracker_device.id not in daemon.server.connections)
        new.send(frame(3, start_ms=T0_MS + 60_000))
        assert new.ack() == 3
        assert stored(tracker_device.id) == 5
        [closed, open_now] = sessions(tracker_device)
        assert closed.close_reason == "replaced"
        assert closed.ended_at is not None
        assert open_now.ended_at is None
        assert other.server.connections[tracker_device.id].session_id == open_now.pk
        # The old connection's totals still reach its session once that daemon closes it.
        assert wait_for(lambda: DeviceSession.objects.get(pk=closed.pk).records == 2)
    finally:
        old.close()
        if new is not None:
            new.close()
        stop_daemon(other)
