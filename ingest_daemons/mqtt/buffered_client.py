"""A paho-mqtt client that reads the socket in large chunks and sends PUBACKs together.

paho reads each packet with at least three ``recv`` calls (its first byte, its length,
the rest) and goes back to ``select`` after every packet; it writes each PUBACK with its
own ``send``. For a consumer taking thousands of small messages a second, these system
calls and loop turns cost more CPU than the messages themselves, and so does the
message object paho builds for each one (with a lock and condition of its own, and a
properties object). This client changes three private methods of the pinned paho
release, and nothing of the protocol:

- ``_sock_recv`` reads up to ``READ_SIZE`` bytes at once and serves paho's small reads
  from what it holds; ``loop_read`` goes on reading packets while anything is held, so
  that no received byte waits for a ``select`` that the socket would never wake.
- ``ack_many`` queues the PUBACKs of many messages as one write.
- With ``on_publish_received`` set, a QoS 0 or 1 PUBLISH goes to it as (packet id, QoS,
  topic, payload), without a message object; ``on_message`` and the per-topic callbacks
  are then not called for those. Without ``manual_ack`` the PUBACK follows the call, as
  with paho. QoS 2 keeps paho's own handling.

``ingest_daemons/tests/test_mqtt_buffered_client.py`` drives the client over a real
socket with packets written byte by byte, so that a paho release that changes these
methods fails the tests instead of the consumer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

# What one recv asks for: about 400 of the usual telemetry messages.
READ_SIZE = 65_536
PUBACK = 0x40
# The fixed header and packet id of a PUBACK without reason code, which MQTT 3.1.1 and 5
# both accept, and which paho's own ``ack`` sends.
PUBACK_PACKET = struct.Struct("!BBH")
TWO_BYTES = struct.Struct("!H")

# (packet id, QoS, topic as received, payload)
PublishHandler = Callable[[int, int, bytes, bytes], None]


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with chunked reads and grouped PUBACKs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = b""
        self._held_from = 0
        # The socket the held bytes came from: a new connection starts with nothing held.
        self._held_socket: object = None
        self.on_publish_received: PublishHandler | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._held_socket is not self._sock:
            self._held_socket = self._sock
            self._held, self._held_from = b"", 0
        if self._held_from >= len(self._held):
            received = super()._sock_recv(READ_SIZE)
            if len(received) <= bufsize:
                return received
            self._held, self._held_from = received, 0
        start = self._held_from
        self._held_from = start + bufsize
        return self._held[start : self._held_from]

    def holds_unread_bytes(self) -> bool:
        """True while bytes read from the current connection wait to be handled."""
        return self._held_socket is self._sock and self._held_from < len(self._held)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        result = super().loop_read(max_packets)
        # Each turn takes at least one held byte, so this ends with nothing held (or
        # with the connection gone), and the next select waits on the socket alone.
        while result == MQTTErrorCode.MQTT_ERR_SUCCESS and self.holds_unread_bytes():
            result = super().loop_read(max_packets)
        return result

    def ack_many(self, mids: Iterable[int]) -> MQTTErrorCode:
        """Queue the PUBACKs of QoS 1 messages as a single write, in the order given.

        The same packets as ``ack(mid, 1)`` for each, on the connection open now.
        """
        packet = b"".join(PUBACK_PACKET.pack(PUBACK, 2, mid) for mid in mids)
        if not packet:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, packet, 0, 0)

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_publish_received
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if handler is None or qos > 1:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            (topic_length,) = TWO_BYTES.unpack_from(packet, 0)
            position = 2 + topic_length
            topic = bytes(packet[2:position])
            mid = 0
            if qos:
                (mid,) = TWO_BYTES.unpack_from(packet, position)
                position += 2
            if self._protocol == mqtt.MQTTv5:
                # The properties (none that a subscriber must act on) are skipped whole.
                properties_length, position = read_variable_length(packet, position)
                position += properties_length
        except (struct.error, IndexError):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        if len(topic) < topic_length or position > len(packet):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        handler(mid, qos, topic, bytes(packet[position:]))
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def read_variable_length(data: bytes | bytearray, position: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``position``: its value and the position after it."""
    value = 0
    for shift in (0, 7, 14, 21):
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    raise IndexError("variable byte integer longer than four bytes")
