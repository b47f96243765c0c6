"""Slow, half-open and too many TCP clients against the Teltonika daemon.

Each kind is closed by a timeout or the connection limit (configured short here), while a
well-behaved tracker on its own connection keeps getting its ACKs promptly.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from apps.audit.models import AuditEvent
from apps.devices import services as device_services
from apps.devices.models import Device, DeviceProtocol
from apps.telemetry.models import Telemetry
from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.server import ServerOptions
from ingest_daemons.teltonika.simulator import Route, make_record
from ingest_daemons.tests.conftest import NO_ACK_WAIT, PlainTracker, RunningDaemon

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_IMEI = "356307042441100"
SLOW_IMEIS = [f"3563070424412{index:02d}" for index in range(5)]
HANDSHAKE_TIMEOUT = 1.0
FRAME_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAX_CONNECTIONS = 100
FLOOD = 2_000
T0_MS = int(datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def daemon_options() -> ServerOptions:
    return ServerOptions(
        bind="127.0.0.1",
        port=0,
        udp=False,
        max_connections=MAX_CONNECTIONS,
        idle_timeout=IDLE_TIMEOUT,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        frame_timeout=FRAME_TIMEOUT,
        batch_max_delay=0.001,
        command_poll_seconds=0.5,
    )


@pytest.fixture
def trackers(tenant_a) -> dict[str, Device]:
    devices = {}
    for imei in [GOOD_IMEI, *SLOW_IMEIS]:
        devices[imei], _ = device_services.create_device(
            tenant=tenant_a.tenant,
            name=f"FMC650 {imei[-3:]}",
            external_id=imei,
            model="FMC650",
            protocol=DeviceProtocol.TELTONIKA,
        )
    return devices


def avl_frame(sequence: int) -> bytes:
    route = Route(54.6676016, 25.2562916, 50.0)
    return codec.encode_avl_frame(codec.CODEC_8E, [make_record(route, T0_MS + sequence * 1000)])


class GoodTracker(threading.Thread):
    """A tracker sending a packet every tenth of a second and timing each ACK."""

    def __init__(self, port: int) -> None:
        super().__init__(name="good-tracker", daemon=True)
        self.tracker = PlainTracker(port)
        assert self.tracker.handshake(GOOD_IMEI) == b"\x01"
        self.latencies: list[float] = []
        self.missed = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.stopping.is_set():
            sequence += 1
            started = time.monotonic()
            self.tracker.send(avl_frame(sequence))
            if self.tracker.ack() == 1:
                self.latencies.append(time.monotonic() - started)
            else:
                self.missed += 1
                return
            self.stopping.wait(0.1)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        self.tracker.close()

    def assert_served_promptly(self, at_least: int) -> None:
        """Every packet so far was ACKed promptly, and at least ``at_least`` were sent (a
        loaded machine may need a moment more to get there after a short test)."""
        wait_for(lambda: self.missed or len(self.latencies) >= at_least, timeout=20)
        assert self.missed == 0
        assert len(self.latencies) >= at_least
        assert max(self.latencies) < NO_ACK_WAIT


@pytest.fixture
def good_tracker(daemon: RunningDaemon, trackers) -> Iterator[GoodTracker]:
    tracker = GoodTracker(daemon.port)
    tracker.start()
    yield tracker
    tracker.stop()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(65_536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def trickle(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` a byte every 0.2 s until the server closes; how many bytes went."""
    for sent, byte in enumerate(data):
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(0.2)
    return len(data)


def disconnect_reason(device: Device) -> str | None:
    event = AuditEvent.objects.filter(device_id=device.pk, type="device.disconnected").first()
    return event.payload["reason"] if event else None


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_client_sending_a_byte_at_a_time_is_closed_at_the_frame_deadline(
    daemon, trackers, good_tracker
):
    slow = PlainTracker(daemon.port)
    assert slow.handshake(SLOW_IMEIS[0]) == b"\x01"
    frame = avl_frame(1)
    started = time.monotonic()
    # A byte every 0.2 s: never idle for IDLE_TIMEOUT, so only the frame deadline ends it.
    sent = trickle(slow.socket, frame)
    assert closed_by_server(slow.socket, 5)
    elapsed = time.monotonic() - started
    assert sent < len(frame)
    assert FRAME_TIMEOUT <= elapsed < FRAME_TIMEOUT + IDLE_TIMEOUT + 2
    assert wait_for(lambda: disconnect_reason(trackers[SLOW_IMEIS[0]]) == "frame_timeout")
    assert not Telemetry.objects.filter(device=trackers[SLOW_IMEIS[0]]).exists()
    slow.close()
    good_tracker.assert_served_promptly(at_least=5)


def test_a_client_trickling_its_imei_is_closed_at_the_handshake_deadline(daemon, good_tracker):
    slow = PlainTracker(daemon.port)
    started = time.monotonic()
    sent = trickle(slow.socket, codec.encode_imei(SLOW_IMEIS[1]) * 10)
    assert sent < len(codec.encode_imei(SLOW_IMEIS[1]))
    assert closed_by_server(slow.socket, 5)
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 3
    slow.close()
    good_tracker.assert_served_promptly(at_least=3)


def test_a_frame_never_finished_is_closed_at_the_frame_deadline(daemon, trackers, good_tracker):
    half_open = PlainTracker(daemon.port)
    assert half_open.handshake(SLOW_IMEIS[2]) == b"\x01"
    frame = avl_frame(1)
    half_open.send(frame[: len(frame) // 2])
    started = time.monotonic()

    assert closed_by_server(half_open.socket, IDLE_TIMEOUT + 5)
    assert time.monotonic() - started >= FRAME_TIMEOUT - 0.1
    assert wait_for(lambda: disconnect_reason(trackers[SLOW_IMEIS[2]]) == "frame_timeout")
    half_open.close()
    good_tracker.assert_served_promptly(at_least=5)


def test_a_client_silent_after_its_imei_is_closed_when_idle(daemon, trackers, good_tracker):
    silent = PlainTracker(daemon.port)
    assert silent.handshake(SLOW_IMEIS[3]) == b"\x01"
    started = time.monotonic()

    assert closed_by_server(silent.socket, IDLE_TIMEOUT + 5)
    assert time.monotonic() - started >= IDLE_TIMEOUT - 0.1
    assert wait_for(lambda: disconnect_reason(trackers[SLOW_IMEIS[3]]) == "idle_timeout")
    silent.close()
    good_tracker.assert_served_promptly(at_least=10)


def test_a_client_that_never_sends_anything_is_closed_at_the_handshake_deadline(
    daemon, good_tracker
):
    mute = PlainTracker(daemon.port)
    started = time.monotonic()

    assert closed_by_server(mute.socket, HANDSHAKE_TIMEOUT + 5)
    assert time.monotonic() - started >= HANDSHAKE_TIMEOUT - 0.1
    mute.close()
    good_tracker.assert_served_promptly(at_least=5)


def test_thousands_of_connections_are_bounded_and_all_closed(daemon, good_tracker):
    server = daemon.server
    flood: list[socket.socket] = []
    most_open = 0
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10))
            most_open = max(most_open, server.open_connections)
        # Silent and over the limit: each is closed at once, or at the handshake deadline.
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in flood}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        closed: set[int] = set()
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 20
        while len(closed) < FLOOD and time.monotonic() < deadline:
            most_open = max(most_open, server.open_connections)
            for fd, _event in poller.poll(100):
                try:
                    data = by_fd[fd].recv(16)
                except ConnectionResetError:
                    data = b""
                assert data == b"", "the server wrote to a client that sent nothing"
                closed.add(fd)
                poller.unregister(fd)
        assert len(closed) == FLOOD
    finally:
        for sock in flood:
            sock.close()
    # The good tracker holds one of the slots all along.
    assert most_open <= MAX_CONNECTIONS
    assert wait_for(lambda: server.open_connections == 1)
    good_tracker.assert_served_promptly(at_least=5)
