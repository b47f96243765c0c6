"""Several Teltonika daemons sharing one port (SO_REUSEPORT), as one per core would."""

from __future__ import annotations

import errno

import pytest
from django.db import connection

from apps.devices import services as device_services
from apps.devices.models import DeviceProtocol
from apps.telemetry.models import Telemetry
from ingest_daemons.teltonika.server import ServerOptions
from ingest_daemons.tests.conftest import PlainTracker, start_daemon, stop_daemon
from ingest_daemons.tests.test_teltonika_daemon import frame

pytestmark = pytest.mark.django_db(transaction=True)

TRACKERS = 24
FIRST_IMEI = 356307042450000
ADDRESS_IN_USE = "(?i)address already in use"


@pytest.fixture
def shared_options(daemon_options: ServerOptions) -> ServerOptions:
    if connection.vendor == "sqlite":
        pytest.skip("the daemon's threads need a database that several connections can share")
    return daemon_options.replace(share_port=True, udp=True)


def test_two_daemons_split_the_trackers_of_one_port(tenant_a, shared_options):
    for number in range(TRACKERS):
        device_services.create_device(
            tenant=tenant_a.tenant,
            name=f"tracker {number}",
            external_id=str(FIRST_IMEI + number),
            model="FMC650",
            protocol=DeviceProtocol.TELTONIKA,
        )
    first = start_daemon(shared_options)
    second = None
    trackers: list[PlainTracker] = []
    try:
        second = start_daemon(shared_options.replace(port=first.port))
        for number in range(TRACKERS):
            tracker = PlainTracker(first.port)
            trackers.append(tracker)
            assert tracker.handshake(str(FIRST_IMEI + number)) == b"\x01"
            tracker.send(frame(3))
            assert tracker.ack() == 3

        # The kernel spreads connections by their addresses: all 24 on one daemon would
        # happen about once in eight million runs.
        served = (first.server.open_connections, second.server.open_connections)
        assert sum(served) == TRACKERS
        assert min(served) > 0
        assert Telemetry.objects.count() == TRACKERS * 3
    finally:
        for tracker in trackers:
            tracker.close()
        if second is not None:
            stop_daemon(second)
        stop_daemon(first)


def test_without_sharing_a_second_daemon_cannot_take_the_port(daemon_options, shared_options):
    first = start_daemon(daemon_options)
    try:
        with pytest.raises(OSError, match=ADDRESS_IN_USE) as refused:
            start_daemon(daemon_options.replace(port=first.port))
        assert refused.value.errno == errno.EADDRINUSE
        # One that shares cannot join a port its first holder did not open for sharing.
        with pytest.raises(OSError, match=ADDRESS_IN_USE):
            start_daemon(shared_options.replace(port=first.port))
    finally:
        stop_daemon(first)
