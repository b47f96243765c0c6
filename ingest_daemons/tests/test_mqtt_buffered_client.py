"""The consumer's paho client: chunked reads and grouped PUBACKs, over a real TCP socket.

The broker here is a listening socket of the test that writes MQTT 5 packets by hand, so
that the test decides exactly which bytes arrive in which read.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from ingest_daemons.mqtt.buffered_client import READ_SIZE, BufferedClient

CONNACK = b"\x20\x03\x00\x00\x00"
TIMEOUT = 10.0


def remaining_length(size: int) -> bytes:
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


def publish_packet(
    topic: str, mid: int, payload: bytes, *, qos: int = 1, properties: bytes = b""
) -> bytes:
    """An MQTT 5 PUBLISH with the given encoded properties."""
    encoded = topic.encode()
    body = struct.pack("!H", len(encoded)) + encoded
    if qos:
        body += struct.pack("!H", mid)
    body += remaining_length(len(properties)) + properties + payload
    return bytes([0x30 | qos << 1]) + remaining_length(len(body)) + body


class HandWrittenBroker:
    """One accepted connection whose bytes the test writes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connection: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.listener.settimeout(TIMEOUT)
        self.connection, _ = self.listener.accept()
        self.connection.settimeout(TIMEOUT)
        header = self.connection.recv(2)
        # The rest of CONNECT; it fits in one byte of remaining length here.
        self.receive_exactly(header[1])
        return self.connection

    def send(self, data: bytes) -> None:
        assert self.connection is not None
        self.connection.sendall(data)

    def receive_exactly(self, size: int) -> bytes:
        assert self.connection is not None
        data = b""
        while len(data) < size:
            chunk = self.connection.recv(size - len(data))
            assert chunk, "the client closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.listener.close()


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[int, str, bytes]] = []

    def __call__(self, client: object, userdata: object, message: object) -> None:
        self.messages.append((message.mid, message.topic, message.payload))  # type: ignore[attr-defined]


@pytest.fixture
def broker() -> Iterator[HandWrittenBroker]:
    opened = HandWrittenBroker()
    yield opened
    opened.close()


def connected(broker: HandWrittenBroker, *, manual_ack: bool) -> BufferedClient:
    """A connected client driven by hand: each ``loop_read`` call is one turn of its loop."""
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id="buffered-test",
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    client.connect("127.0.0.1", broker.port)
    broker.accept()
    broker.send(CONNACK)
    wait_readable(client)
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert client.is_connected()
    return client


@pytest.fixture
def client(broker: HandWrittenBroker) -> Iterator[tuple[BufferedClient, Received]]:
    """A client with manual acknowledgements that hands paho's message objects over."""
    client = connected(broker, manual_ack=True)
    received = Received()
    client.on_message = received
    yield client, received
    client.disconnect()


class RawReceived:
    def __init__(self) -> None:
        self.publishes: list[tuple[int, int, bytes, bytes]] = []

    def __call__(self, mid: int, qos: int, topic: bytes, payload: bytes) -> None:
        self.publishes.append((mid, qos, topic, payload))


def wait_readable(client: BufferedClient) -> None:
    sock = client.socket()
    assert sock is not None
    readable, _, _ = select.select([sock], [], [], TIMEOUT)
    assert readable, "nothing arrived"


def test_one_read_turn_handles_every_packet_that_arrived_together(broker, client) -> None:
    client, received = client
    packets = [publish_packet("ingest/abc", mid, f"point {mid}".encode()) for mid in (1, 2, 3)]
    broker.send(b"".join(packets))
    wait_readable(client)

    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS

    # paho alone hands over one packet per turn and leaves the rest for the next select.
    assert received.messages == [(mid, "ingest/abc", f"point {mid}".encode()) for mid in (1, 2, 3)]
    assert not client.holds_unread_bytes()


def test_a_packet_cut_between_reads_is_completed_by_the_next_one(broker, client) -> None:
    client, received = client
    first = publish_packet("ingest/abc", 7, b"first")
    payload = bytes(range(256)) * (3 * READ_SIZE // 256)
    large = publish_packet("ingest/abc", 8, payload)
    cut = len(first) + READ_SIZE // 2
    broker.send((first + large)[:cut])
    wait_readable(client)
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert received.messages == [(7, "ingest/abc", b"first")]

    broker.send(large[cut - len(first) :])
    while len(received.messages) < 2:
        wait_readable(client)
        assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS

    assert received.messages[1] == (8, "ingest/abc", payload)
    assert not client.holds_unread_bytes()


def test_acks_of_many_messages_leave_as_one_write_in_order(broker, client) -> None:
    client, _ = client

    assert client.ack_many([5, 3, 65_535]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    client.loop_write()

    expected = b"\x40\x02\x00\x05" + b"\x40\x02\x00\x03" + b"\x40\x02\xff\xff"
    assert broker.receive_exactly(len(expected)) == expected


def test_no_acks_send_nothing(broker, client) -> None:
    client, _ = client
    assert client.ack_many([]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert not client.want_write()


def test_a_closed_connection_is_seen_even_with_bytes_held(broker, client) -> None:
    client, received = client
    broker.send(publish_packet("ingest/abc", 1, b"last words"))
    assert broker.connection is not None
    broker.connection.close()
    results: list[MQTTErrorCode] = []
    while not results or results[-1] == MQTTErrorCode.MQTT_ERR_SUCCESS:
        wait_readable(client)
        results.append(client.loop_read())
        assert len(results) <= 2

    assert received.messages == [(1, "ingest/abc", b"last words")]
    assert not client.is_connected()


# Payload format indicator (1), then a user property ("k", "v").
SOME_PROPERTIES = b"\x01\x01" + b"\x26\x00\x01k\x00\x01v"


def test_publishes_reach_the_raw_handler_without_their_properties(broker) -> None:
    client = connected(broker, manual_ack=True)
    raw = RawReceived()
    client.on_publish_received = raw
    messages = Received()
    client.on_message = messages
    broker.send(
        publish_packet("ingest/t1", 9, b'{"a": 1}', properties=SOME_PROPERTIES)
        + publish_packet("ingest/t2", 0, b"qos zero", qos=0)
        + publish_packet("ingest/\u00e9", 10, b"")
    )
    wait_readable(client)

    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS

    assert raw.publishes == [
        (9, 1, b"ingest/t1", b'{"a": 1}'),
        (0, 0, b"ingest/t2", b"qos zero"),
        (10, 1, "ingest/\u00e9".encode(), b""),
    ]
    assert messages.messages == []
    # Manual acknowledgements: nothing is sent until the consumer says so.
    assert not client.want_write()
    client.disconnect()


def test_without_manual_acks_the_raw_handler_is_followed_by_the_puback(broker) -> None:
    client = connected(broker, manual_ack=False)
    raw = RawReceived()
    client.on_publish_received = raw
    broker.send(publish_packet("ingest/t1", 300, b"{}"))
    wait_readable(client)

    client.loop_read()
    client.loop_write()

    assert raw.publishes == [(300, 1, b"ingest/t1", b"{}")]
    assert broker.receive_exactly(4) == b"\x40\x02\x01\x2c"
    client.disconnect()


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"\x32\x03\x00\x09a", id="topic longer than the packet"),
        pytest.param(b"\x32\x04\x00\x01a\x00", id="packet id cut"),
        pytest.param(b"\x32\x06\x00\x01a\x00\x01\x05", id="properties longer than the packet"),
    ],
)
def test_a_malformed_publish_drops_the_connection_without_a_call(broker, packet) -> None:
    client = connected(broker, manual_ack=True)
    raw = RawReceived()
    client.on_publish_received = raw
    broker.send(packet)
    wait_readable(client)

    assert client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS

    assert raw.publishes == []
    assert client.socket() is None
