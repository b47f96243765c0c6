"""The MQTT consumer against a real broker: stores, refuses, batches and holds back acks."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import struct
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.db import OperationalError
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion

from apps.devices import services as device_services
from apps.telemetry.models import Telemetry
from ingest_daemons.mqtt.consumer import store_submissions
from ingest_daemons.tests.conftest import MQTT_TOKEN, MQTT_WAIT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def stored_count(device: Any) -> int:
    return Telemetry.objects.filter(device_id=device.pk).count()


class UnreachableDatabase:
    """The database at the edge of the process: down for its first ``failures`` writes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, submissions: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
        store_submissions(submissions)


class DeadLetterReader:
    """A client reading the dead-letter topic."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.letters: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = lambda client, userdata, message: self.letters.append(
            json.loads(message.payload)
        )
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(MQTT_WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_it_stores_the_seed_payload_forms_and_a_gateway_list(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    running = start_consumer()
    topic = mqtt_broker.topic_of(MQTT_TOKEN)
    before = timezone.now()

    publisher.send(topic, {"data": {"speed": 12.5}, "ts": iso(T0)})
    # The seed's example: mosquitto_pub -t "ingest/TOKEN" -m '{"gps":{"lat":-33.4,"lon":-70.6}}'
    publisher.send(topic, '{"gps":{"lat":-33.4,"lon":-70.6}}')
    publisher.send(
        topic,
        [
            {"ts": iso(T0 + timedelta(seconds=1)), "data": {"speed": 13}},
            {"ts": iso(T0 + timedelta(seconds=2)), "data": {"speed": 14}},
        ],
    )
    publisher.flush()
    wait_until(lambda: stored_count(mqtt_device) == 4, what="four points")

    points = {point.ts: point.data for point in Telemetry.objects.filter(device=mqtt_device)}
    assert points[T0] == {"speed": 12.5}
    assert points[T0 + timedelta(seconds=1)] == {"speed": 13}
    assert points[T0 + timedelta(seconds=2)] == {"speed": 14}
    (bare_ts,) = set(points) - {T0 + timedelta(seconds=s) for s in range(3)}
    assert points[bare_ts] == {"gps": {"lat": -33.4, "lon": -70.6}}
    assert before <= bare_ts <= timezone.now()
    wait_until(lambda: running.totals.acknowledged == 3, what="three PUBACKs")
    assert (running.totals.messages, running.totals.stored) == (3, 4)
    assert running.totals.rejected == 0


def test_a_repeated_point_is_a_duplicate_not_a_second_row(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    running = start_consumer()
    message = {"data": {"speed": 1}, "ts": iso(T0)}

    publisher.send(mqtt_broker.topic_of(MQTT_TOKEN), message)
    publisher.send(mqtt_broker.topic_of(MQTT_TOKEN), message)
    publisher.flush()
    wait_until(lambda: running.totals.acknowledged == 2, what="two PUBACKs")

    assert stored_count(mqtt_device) == 1
    assert (running.totals.stored, running.totals.duplicates) == (1, 1)


def test_every_bad_message_is_refused_acknowledged_and_dead_lettered(
    start_consumer, publisher, mqtt_broker, mqtt_device, tenant_a, caplog
):
    inactive_token = "inactive-device-token-0123456789"
    device_services.create_device(
        tenant=tenant_a.tenant, name="Retired", token=inactive_token, is_active=False
    )
    dead_letter_topic = mqtt_broker.topic.replace("ingest/+", "dead-letters")
    reader = DeadLetterReader(mqtt_broker.host, mqtt_broker.port, dead_letter_topic)
    running = start_consumer(dead_letter_topic=dead_letter_topic)
    topic = mqtt_broker.topic_of(MQTT_TOKEN)
    caplog.set_level(logging.INFO)

    bad = {
        "invalid_json": (topic, b"{not json"),
        "unknown_token": (mqtt_broker.topic_of("no-such-device-token-0000"), {"data": {}}),
        "device_inactive": (mqtt_broker.topic_of(inactive_token), {"data": {}}),
        "bad_payload": (topic, {"data": 5}),
        "bad_ts": (topic, {"data": {}, "ts": "1970-01-01T00:00:00Z"}),
        "invalid_point": (topic, {"data": {"note": "nul \u0000 inside"}, "ts": iso(T0)}),
    }
    for message_topic, payload in bad.values():
        publisher.send(message_topic, payload)
    publisher.send(topic, ["not a point"])
    publisher.send(topic, {"data": {}, "ts": "next tuesday"})
    publisher.send(topic, {"data": {"good": True}, "ts": iso(T0 + timedelta(minutes=1))})
    publisher.flush()
    wait_until(lambda: running.totals.acknowledged == 9, what="nine PUBACKs")

    assert list(Telemetry.objects.filter(device=mqtt_device).values_list("data", flat=True)) == [
        {"good": True}
    ]
    assert (running.totals.rejected, running.totals.stored) == (8, 1)
    wait_until(lambda: len(reader.letters) == 8, what="eight dead letters")
    reader.close()
    reasons = [letter["reason"] for letter in reader.letters]
    assert set(bad) <= set(reasons)
    assert reasons.count("bad_payload") == 2
    assert reasons.count("bad_ts") == 2
    invalid_json = next(letter for letter in reader.letters if letter["reason"] == "invalid_json")
    assert (invalid_json["topic"], invalid_json["payload"]) == (topic, "{not json")
    # Logs show a token's first characters only.
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert "mqtt.message_rejected" in logged
    assert MQTT_TOKEN not in logged
    assert inactive_token not in logged

    # Acknowledged means gone: a new session of the same client gets none of them again.
    running.stop()
    again = start_consumer()
    publisher.send(topic, {"data": {"after": True}, "ts": iso(T0 + timedelta(minutes=2))})
    publisher.flush()
    wait_until(lambda: stored_count(mqtt_device) == 2, what="the next message")
    assert (again.totals.messages, again.totals.rejected) == (1, 0)


def test_a_database_outage_holds_every_ack_until_the_points_are_stored(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    database = UnreachableDatabase(failures=2)
    running = start_consumer(store=database)

    for second in range(5):
        publisher.send(
            mqtt_broker.topic_of(MQTT_TOKEN),
            {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))},
        )
    publisher.flush()
    wait_until(lambda: running.totals.storage_failures >= 1, what="a failed write")
    assert running.totals.acknowledged == 0
    wait_until(lambda: running.totals.acknowledged == 5, what="five PUBACKs after recovery")

    assert stored_count(mqtt_device) == 5
    assert running.totals.storage_failures == 2
    assert running.totals.stored == 5


def test_messages_held_during_an_outage_come_back_to_the_next_session(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    first = start_consumer(store=UnreachableDatabase(failures=1_000))
    for second in range(5):
        publisher.send(
            mqtt_broker.topic_of(MQTT_TOKEN),
            {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))},
        )
    publisher.flush()
    # The first batch may hold fewer than five: the rest wait behind it, unread, while it
    # is retried; all of them are the next session's.
    wait_until(lambda: first.totals.messages >= 1, what="a message received")
    wait_until(lambda: first.totals.storage_failures >= 1, what="a failed write")

    # Stopped while the database is still down: nothing was stored, nothing acknowledged.
    first.stop()
    assert (first.totals.acknowledged, stored_count(mqtt_device)) == (0, 0)

    second = start_consumer()
    wait_until(lambda: stored_count(mqtt_device) == 5, what="the redelivered points")
    wait_until(lambda: second.totals.acknowledged == 5, what="five PUBACKs")


def test_consumers_of_one_shared_subscription_split_the_stream(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    one = start_consumer(shared_group="fleet", client_id=f"{mqtt_broker.topic[:20]}-one")
    two = start_consumer(shared_group="fleet", client_id=f"{mqtt_broker.topic[:20]}-two")

    for second in range(40):
        publisher.send(
            mqtt_broker.topic_of(MQTT_TOKEN),
            {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))},
        )
    publisher.flush()
    wait_until(lambda: stored_count(mqtt_device) == 40, what="forty points")
    wait_until(
        lambda: one.totals.acknowledged + two.totals.acknowledged == 40, what="forty PUBACKs"
    )

    assert one.totals.messages > 0
    assert two.totals.messages > 0
    assert one.totals.duplicates + two.totals.duplicates == 0


def test_with_mqtt_3_1_1_the_session_keeps_what_arrives_while_away(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    first = start_consumer(protocol="3.1.1")
    publisher.send(mqtt_broker.topic_of(MQTT_TOKEN), {"data": {"n": 0}, "ts": iso(T0)})
    publisher.flush()
    wait_until(lambda: first.totals.acknowledged == 1, what="one PUBACK")
    first.stop()

    for second in range(1, 4):
        publisher.send(
            mqtt_broker.topic_of(MQTT_TOKEN),
            {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))},
        )
    publisher.flush()
    again = start_consumer(protocol="3.1.1")

    wait_until(lambda: stored_count(mqtt_device) == 4, what="the points sent while away")
    wait_until(lambda: again.totals.acknowledged == 3, what="three PUBACKs")


class SlowLink:
    """A TCP link to the broker that delivers the client's bytes late and, when the client
    closes, drops the broker's side at once: what it still held never arrives."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.target = (host, port)
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
                late: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(
                    target=self._read, args=(client, upstream, late), daemon=True
                ).start()
                threading.Thread(target=self._deliver, args=(upstream, late), daemon=True).start()
                threading.Thread(target=self._answer, args=(upstream, client), daemon=True).start()

    def _read(
        self, client: socket.socket, upstream: socket.socket, late: queue.Queue[tuple[float, bytes]]
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                late.put((time.monotonic() + self.delay, chunk))
        # The client is gone: so is everything not yet delivered.
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        upstream.close()
        client.close()

    def _deliver(self, upstream: socket.socket, late: queue.Queue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while True:
                due, chunk = late.get()
                time.sleep(max(0.0, due - time.monotonic()))
                upstream.sendall(chunk)

    def _answer(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := upstream.recv(65536):
                client.sendall(chunk)

    def close(self) -> None:
        self.listener.close()


def test_a_stopped_consumer_waits_until_the_broker_has_its_acks(
    start_consumer, publisher, mqtt_broker, mqtt_device
):
    link = SlowLink(mqtt_broker.host, mqtt_broker.port, delay=0.3)
    topic = mqtt_broker.topic_of(MQTT_TOKEN)
    try:
        running = start_consumer(host="127.0.0.1", port=link.port)
        publisher.send(topic, {"data": {"n": 1}, "ts": iso(T0)})
        publisher.flush()
        wait_until(lambda: running.totals.acknowledged == 1, what="the PUBACK")
        running.stop()
    finally:
        link.close()

    # Had the consumer closed with its PUBACK still on the way, the next session of the
    # same client would receive the message again.
    again = start_consumer()
    publisher.send(topic, {"data": {"n": 2}, "ts": iso(T0 + timedelta(seconds=1))})
    publisher.flush()
    wait_until(lambda: stored_count(mqtt_device) == 2, what="the next message")
    assert (again.totals.messages, again.totals.duplicates) == (1, 0)
