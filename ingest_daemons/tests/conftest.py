"""Running daemons: the Teltonika server with plain-socket trackers, the MQTT consumer with
a broker and publishers."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.db import connection
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from apps.devices import services as device_services
from apps.devices.models import Device, DeviceProtocol
from ingest_daemons.mqtt.consumer import ConsumerOptions, MqttConsumer, Totals
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
    thread: threading.Thread
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
    running = start_daemon(daemon_options)
    yield running
    stop_daemon(running)


def start_daemon(options: ServerOptions) -> RunningDaemon:
    """A started server in an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="teltonika-test", daemon=True)
    thread.start()
    server = TeltonikaServer(options)
    running = RunningDaemon(server, loop, thread, 0)
    try:
        running.call(server.start())
    except BaseException:
        stop_daemon(running)
        raise
    running.port = server.tcp_port
    return running


def stop_daemon(running: RunningDaemon) -> None:
    running.call(running.server.stop())
    shut_loop(running)


def shut_loop(running: RunningDaemon) -> None:
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)
    running.loop.close()


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


# MQTT: the broker of the development machine (.ci/run starts it), a topic and client ids
# of each test's own, so that tests never see each other's messages or sessions.

MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883
MQTT_TOKEN = "mqtt-device-token-0123456789"
MQTT_WAIT = 20.0


def port_answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def forget_session(host: str, port: int, client_id: str) -> None:
    """End a persistent session the broker keeps for ``client_id``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    try:
        client.connect(host, port, clean_start=True, properties=properties)
    except OSError:
        return
    client.loop_start()
    deadline = time.monotonic() + 5
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def wait_until(condition: Any, timeout: float = MQTT_WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Publisher:
    """A device (or gateway) publishing at QoS 1 and waiting for the broker's PUBACKs."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"qf-test-publisher-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect(host, port)
        self.client.loop_start()
        self.sent: list[mqtt.MQTTMessageInfo] = []

    def send(self, topic: str, payload: Any) -> None:
        if not isinstance(payload, bytes | str):
            payload = json.dumps(payload)
        self.sent.append(self.client.publish(topic, payload, qos=1))

    def flush(self) -> None:
        for info in self.sent:
            info.wait_for_publish(MQTT_WAIT)
        self.sent.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class MqttBroker:
    host: str
    port: int
    topic: str

    def topic_of(self, token: str) -> str:
        return self.topic.replace("+", token)


@pytest.fixture
def mqtt_broker() -> MqttBroker:
    if not port_answers(MQTT_HOST, MQTT_PORT):
        pytest.skip(f"no MQTT broker at {MQTT_HOST}:{MQTT_PORT}: start Mosquitto (.ci/run does)")
    return MqttBroker(MQTT_HOST, MQTT_PORT, f"qf-test-{uuid.uuid4().hex[:12]}/ingest/+")


@pytest.fixture
def publisher(mqtt_broker: MqttBroker) -> Iterator[Publisher]:
    opened = Publisher(mqtt_broker.host, mqtt_broker.port)
    yield opened
    opened.close()


@pytest.fixture
def mqtt_device(tenant_a) -> Device:
    device, _ = device_services.create_device(
        tenant=tenant_a.tenant, name="MQTT sensor", token=MQTT_TOKEN
    )
    return device


@dataclass
class RunningConsumer:
    consumer: MqttConsumer
    thread: threading.Thread

    @property
    def totals(self) -> Totals:
        return self.consumer.totals

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the consumer did not stop"


@pytest.fixture
def start_consumer(transactional_db: None, mqtt_broker: MqttBroker) -> Iterator[Any]:
    """Start ``runmqtt``'s consumer in a thread of the test: ``start(**option_overrides)``."""
    if connection.vendor == "sqlite":
        pytest.skip("the consumer's thread needs a database that several connections can share")
    running: list[RunningConsumer] = []
    client_ids: set[str] = set()
    default_client_id = f"qf-test-consumer-{uuid.uuid4().hex[:10]}"

    def start(store: Any = None, **overrides: Any) -> RunningConsumer:
        options = ConsumerOptions(
            host=mqtt_broker.host,
            port=mqtt_broker.port,
            topic=mqtt_broker.topic,
            client_id=default_client_id,
            session_expiry=300,
            batch_max_delay=0.002,
        ).replace(**overrides)
        client_ids.add(options.client_id)
        consumer = MqttConsumer(options, **({"store": store} if store else {}))
        thread = threading.Thread(target=consumer.run, name="mqtt-consumer-test", daemon=True)
        thread.start()
        started = RunningConsumer(consumer, thread)
        running.append(started)
        assert consumer.subscribed.wait(MQTT_WAIT), "the consumer did not subscribe"
        return started

    yield start
    for started in running:
        if started.thread.is_alive():
            started.stop()
    for client_id in client_ids:
        forget_session(mqtt_broker.host, mqtt_broker.port, client_id)
