"""Devices that behave as real ones under faults: each point has its own device time, a
point counts as delivered only once the transport acknowledged it, and what was not
acknowledged is sent again until it is.

A ``Ledger`` records, per device, which points were sent, how often, and which were
acknowledged, so that a run can compare what the devices were promised with what the
database holds. Nothing here imports Django.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.simulator import Route, make_record

# How long a device waits for an acknowledgement before it counts the send as failed.
ACK_TIMEOUT = 5.0
# How long a device waits before it tries again after a failure (connection refused,
# an error answer, no acknowledgement).
RETRY_PAUSE = 0.2
# The longest a device honours a Retry-After within a run.
MAX_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class PlannedPoint:
    """One reading of one device: its sequence number and its device time."""

    seq: int
    ts_ms: int

    @property
    def iso(self) -> str:
        moment = datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_points(count: int, start_ms: int, step_ms: int = 500) -> list[PlannedPoint]:
    return [PlannedPoint(seq, start_ms + seq * step_ms) for seq in range(count)]


@dataclass
class DeviceRecord:
    sent: dict[int, int] = field(default_factory=dict)  # seq -> times sent
    acknowledged: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)


class Ledger:
    """What every device sent and saw acknowledged; safe to use from many threads."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceRecord] = {}
        self._lock = threading.Condition()
        self.acknowledged_total = 0
        # How often each answer that acknowledged nothing came (HTTP status codes).
        self.refusals: Counter[str] = Counter()

    def device(self, key: str) -> DeviceRecord:
        with self._lock:
            return self.devices.setdefault(key, DeviceRecord())

    def sending(self, key: str, points: Sequence[PlannedPoint]) -> None:
        with self._lock:
            record = self.devices[key]
            for point in points:
                record.sent[point.seq] = record.sent.get(point.seq, 0) + 1

    def acknowledge(self, key: str, points: Sequence[PlannedPoint]) -> None:
        with self._lock:
            record = self.devices[key]
            new = {point.seq for point in points} - record.acknowledged
            record.acknowledged |= new
            self.acknowledged_total += len(new)
            self._lock.notify_all()

    def refused(self, answer: str) -> None:
        with self._lock:
            self.refusals[answer] += 1

    def fail(self, key: str, reason: str) -> None:
        with self._lock:
            failures = self.devices[key].failures
            # A handful is enough to tell what happened.
            if len(failures) < 5:
                failures.append(reason)

    def wait_for_acknowledged(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.acknowledged_total < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    @property
    def sent(self) -> int:
        return sum(len(record.sent) for record in self.devices.values())

    @property
    def resent(self) -> int:
        """Points sent more than once: each retry of an unacknowledged point counts."""
        return sum(times - 1 for record in self.devices.values() for times in record.sent.values())

    @property
    def acknowledged(self) -> int:
        return sum(len(record.acknowledged) for record in self.devices.values())


class Device:
    """One device's sending loop: chunks of points, each sent until acknowledged."""

    def __init__(self, key: str, ledger: Ledger) -> None:
        self.key = key
        self.ledger = ledger
        ledger.device(key)

    def send_until_acknowledged(self, points: Sequence[PlannedPoint]) -> bool:
        """True once the transport acknowledged ``points``; a failure is retried."""
        raise NotImplementedError

    def run(
        self, points: Sequence[PlannedPoint], chunk: int, deadline: float, interval: float = 0.0
    ) -> None:
        """Send ``points`` ``chunk`` at a time, one chunk every ``interval`` seconds.

        A chunk that falls behind its time (after an outage) goes at once: the device
        sends what it held back as soon as it can.
        """
        began = time.monotonic()
        for number, start in enumerate(range(0, len(points), chunk)):
            part = points[start : start + chunk]
            wait = began + number * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            while True:
                if time.monotonic() > deadline:
                    self.ledger.fail(self.key, "gave up: deadline")
                    self.close()
                    return
                self.ledger.sending(self.key, part)
                try:
                    acknowledged = self.send_until_acknowledged(part)
                except Exception as error:  # a device retries whatever went wrong
                    self.ledger.fail(self.key, f"{type(error).__name__}: {error}"[:200])
                    acknowledged = False
                if acknowledged:
                    self.ledger.acknowledge(self.key, part)
                    break
                self.reset()
                time.sleep(RETRY_PAUSE)
        self.close()

    def reset(self) -> None:
        """Drop the connection after a failure: the next send opens a new one."""

    def close(self) -> None:
        self.reset()


class HttpDevice(Device):
    """Posts batches to ``POST /ingest/http`` on a kept-alive connection; 2xx acknowledges."""

    def __init__(self, key: str, ledger: Ledger, port: int) -> None:
        super().__init__(key, ledger)
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def send_until_acknowledged(self, points: Sequence[PlannedPoint]) -> bool:
        body = json.dumps(
            {
                "points": [
                    {"ts": point.iso, "data": {"seq": point.seq, "source": "fault-run"}}
                    for point in points
                ]
            }
        )
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.connection.request(
            "POST",
            "/ingest/http",
            body,
            {"Content-Type": "application/json", "Authorization": f"Device {self.key}"},
        )
        response = self.connection.getresponse()
        answer = response.read()
        if 200 <= response.status < 300:
            return True
        self.ledger.refused(f"HTTP {response.status}")
        self.ledger.fail(self.key, f"HTTP {response.status}: {answer[:120]!r}")
        if response.status == 429:
            # Over a rate limit: the points are sent again once the answer says so.
            time.sleep(min(float(response.getheader("Retry-After") or 1), MAX_RETRY_AFTER))
            return False
        if response.status < 500:
            # The system refused the points themselves: sending them again cannot help.
            raise RefusedError(f"HTTP {response.status}")
        return False

    def reset(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class RefusedError(Exception):
    """The system refused points as invalid: a fault run never sends such points."""


class MqttDevice(Device):
    """Publishes at QoS 1 to ``ingest/<token>``; the broker's PUBACK acknowledges.

    One message at a time, as a small device does. A message without its PUBACK in time
    is published again on a new connection.
    """

    def __init__(self, key: str, ledger: Ledger, port: int, topic: str) -> None:
        super().__init__(key, ledger)
        self.port = port
        self.topic = topic
        self.client: mqtt.Client | None = None

    def connect(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"qf-{self.key}",
            protocol=mqtt.MQTTv311,
        )
        client.connect("127.0.0.1", self.port, keepalive=10)
        client.loop_start()
        deadline = time.monotonic() + ACK_TIMEOUT
        while not client.is_connected():
            if time.monotonic() > deadline:
                client.loop_stop()
                raise TimeoutError("no CONNACK")
            time.sleep(0.01)
        return client

    def send_until_acknowledged(self, points: Sequence[PlannedPoint]) -> bool:
        if self.client is None:
            self.client = self.connect()
        payload: Any = [{"ts": point.iso, "data": {"seq": point.seq}} for point in points]
        if len(points) == 1:
            payload = payload[0]
        info = self.client.publish(self.topic, json.dumps(payload), qos=1)
        info.wait_for_publish(ACK_TIMEOUT)
        return info.is_published()

    def reset(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            client.disconnect()
            client.loop_stop()


class TeltonikaDevice(Device):
    """A tracker on TCP: IMEI handshake, Codec 8 Extended packets, a 4-byte ACK per packet.

    A packet whose ACK does not come (or does not count every record) is sent again on a
    new connection, which is what a tracker does with the records it still holds.
    """

    def __init__(self, key: str, ledger: Ledger, port: int) -> None:
        super().__init__(key, ledger)
        self.port = port
        self.socket: socket.socket | None = None
        self.route = Route(-33.41, -70.61, 40.0)

    def connect(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=ACK_TIMEOUT)
        try:
            connection.sendall(codec.encode_imei(self.key))
            answer = receive_exactly(connection, 1)
        except BaseException:
            connection.close()
            raise
        if answer != b"\x01":
            connection.close()
            raise ConnectionError(f"IMEI answered {answer!r}")
        return connection

    def send_until_acknowledged(self, points: Sequence[PlannedPoint]) -> bool:
        if self.socket is None:
            self.socket = self.connect()
        records = []
        for point in points:
            records.append(make_record(self.route, point.ts_ms))
            self.route.advance(0.5)
        self.socket.sendall(codec.encode_avl_frame(codec.CODEC_8E, records))
        ack = receive_exactly(self.socket, 4)
        return len(ack) == 4 and struct.unpack(">I", ack)[0] == len(records)

    def reset(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the other side closed first."""
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def run_devices(
    devices: Sequence[tuple[Device, Sequence[PlannedPoint]]],
    chunk: int,
    deadline: float,
    interval: float = 0.0,
) -> list[threading.Thread]:
    """Start one thread per device, each sending a chunk every ``interval`` seconds."""
    threads = []
    for device, points in devices:
        thread = threading.Thread(
            target=device.run,
            args=(points, chunk, deadline, interval),
            name=f"device-{device.key}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads
