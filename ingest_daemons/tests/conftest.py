"""A running Teltonika daemon on a real socket, and plain-socket trackers to talk to it."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection

from apps.devices import services as device_services
from apps.devices.models import Device, DeviceProtocol
from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.server import ServerOptions, TeltonikaServer
from ingest_daemons.teltonika.simulator import Route, SimulatedTracker

IMEI = "356307042441013"
OTHER_IMEI = "356307042441014"
SOCKET_TIMEOUT = 10.0
# Long enough for a commit on a loaded machine; an ACK later than this counts as none.
NO_ACK_WAIT = 1.5


@dataclass
class RunningDaemon:
    server: TeltonikaServer
    loop: asyncio.AbstractEventLoop
    port: int

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@pytest.fixture
def daemon_options() -> ServerOptions:
    return ServerOptions(
        bind="127.0.0.1",
        port=0,
        idle_timeout=30,
        batch_max_delay=0.001,
        command_poll_seconds=0.1,
        command_answer_timeout=5,
    )


@pytest.fixture
def daemon(transactional_db: None, daemon_options: ServerOptions) -> Iterator[RunningDaemon]:
    """``runteltonika``'s server, running in its own thread and event loop."""
    if connection.vendor == "sqlite":
        pytest.skip("the daemon's threads need a database that several connections can share")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="teltonika-test", daemon=True)
    thread.start()
    server = TeltonikaServer(daemon_options)
    running = RunningDaemon(server, loop, 0)
    running.call(server.start())
    running.port = server.tcp_port
    yield running
    running.call(server.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def tracker_device(tenant_a) -> Device:
    device, _ = device_services.create_device(
        tenant=tenant_a.tenant,
        name="FMC650 one",
        external_id=IMEI,
        model="FMC650",
        protocol=DeviceProtocol.TELTONIKA,
    )
    return device


class PlainTracker:
    """A tracker written with a blocking socket, byte by byte as the protocol says."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)

    def handshake(self, imei: str) -> bytes:
        self.socket.sendall(codec.encode_imei(imei))
        return self.receive(1)

    def send(self, frame: bytes) -> None:
        self.socket.sendall(frame)

    def ack(self, timeout: float = SOCKET_TIMEOUT) -> int | None:
        """The next ACK, or None when none comes in ``timeout`` or the server closed."""
        self.socket.settimeout(timeout)
        try:
            data = self.receive(4)
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self.socket.settimeout(SOCKET_TIMEOUT)
        return int(struct.unpack(">I", data)[0]) if len(data) == 4 else None

    def receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.socket.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def is_closed_by_server(self, timeout: float = 5.0) -> bool:
        self.socket.settimeout(timeout)
        try:
            return self.socket.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def plain_tracker(daemon: RunningDaemon) -> Iterator[Any]:
    opened: list[PlainTracker] = []

    def connect() -> PlainTracker:
        tracker = PlainTracker(daemon.port)
        opened.append(tracker)
        return tracker

    yield connect
    for tracker in opened:
        tracker.close()


def simulated(port: int, imei: str) -> SimulatedTracker:
    return SimulatedTracker("127.0.0.1", port, imei, Route(-33.41, -70.61, 40.0))
