"""``manage.py runteltonika`` as its own process: killed, restarted and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection

from apps.devices.models import DeviceSession
from apps.telemetry.models import Telemetry
from ingest_daemons.teltonika import codec
from ingest_daemons.tests.conftest import IMEI, PlainTracker
from ingest_daemons.tests.test_teltonika_daemon import records

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
T0_MS = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1000)
PACKETS = 40
RECORDS_PER_PACKET = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def url_of_test_database() -> str:
    settings = connection.settings_dict
    return (
        f"postgres://{settings['USER']}:{settings['PASSWORD'] or ''}@{settings['HOST']}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )


class DaemonProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {
            **os.environ,
            "DJANGO_ENV": "test",
            "DATABASE_URL": url_of_test_database(),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "manage.py", "runteltonika", "--bind", "127.0.0.1"]
        self.process = subprocess.Popen(  # noqa: S603  (this test's own command)
            [*command, "--port", str(self.port), "--no-udp"], cwd=REPO_ROOT, env=environment
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "runteltonika exited at start"
                time.sleep(0.1)
        raise AssertionError("runteltonika did not start listening")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(40)


@pytest.fixture
def daemon_process() -> Iterator[DaemonProcess]:
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs a database server, not an in-memory SQLite")
    daemon = DaemonProcess(free_port())
    yield daemon
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.kill()


def connect(port: int) -> PlainTracker:
    tracker = PlainTracker(port)
    assert tracker.handshake(IMEI) == b"\x01"
    return tracker


def test_nothing_acknowledged_is_lost_across_a_kill_and_restart(daemon_process, tracker_device):
    packets = [
        codec.encode_avl_frame(
            codec.CODEC_8E, records(RECORDS_PER_PACKET, T0_MS + index * RECORDS_PER_PACKET * 1000)
        )
        for index in range(PACKETS)
    ]
    daemon_process.start()
    tracker = connect(daemon_process.port)
    acknowledged = 0
    index = 0
    killed = False
    while index < PACKETS:
        tracker.send(packets[index])
        if index == PACKETS // 2 and not killed:
            # Killed with the packet in flight: committed or not, it may not be ACKed.
            daemon_process.kill()
            killed = True
        ack = tracker.ack(timeout=5)
        if ack == RECORDS_PER_PACKET:
            acknowledged += 1
            index += 1
            continue
        # No ACK: as a tracker does, reconnect and send the same packet again.
        tracker.close()
        if daemon_process.process.poll() is not None:
            daemon_process.start()
        tracker = connect(daemon_process.port)
    tracker.close()

    assert killed
    assert acknowledged == PACKETS
    stored = Telemetry.objects.filter(device_id=tracker_device.pk)
    assert stored.count() == PACKETS * RECORDS_PER_PACKET
    expected = {T0_MS + offset * 1000 for offset in range(PACKETS * RECORDS_PER_PACKET)}
    assert {int(point.ts.timestamp() * 1000) for point in stored} == expected


def test_sigterm_acknowledges_what_it_stored_and_closes(daemon_process, tracker_device):
    daemon_process.start()
    tracker = connect(daemon_process.port)
    tracker.send(codec.encode_avl_frame(codec.CODEC_8E, records(3, T0_MS)))
    assert tracker.ack() == 3

    assert daemon_process.stop() == 0

    assert tracker.is_closed_by_server()
    session = DeviceSession.objects.get(device=tracker_device)
    assert (session.records, session.close_reason) == (3, "server_shutdown")
    assert session.ended_at is not None
