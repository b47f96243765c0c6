"""``manage.py runmqtt`` as its own process, and a broker of its own that restarts."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.devices import services as device_services
from apps.telemetry.models import Telemetry
from ingest_daemons.tests.conftest import (
    MQTT_TOKEN,
    MqttBroker,
    Publisher,
    forget_session,
    port_answers,
    wait_until,
)
from ingest_daemons.tests.test_teltonika_process import REPO_ROOT, free_port, url_of_test_database

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 10, 1, tzinfo=UTC)
PROBE_TOKEN = "mqtt-probe-token-0123456789"
MESSAGES = 300
# Every tenth message is a gateway's list of this many points.
GATEWAY_POINTS = 3


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class ConsumerProcess:
    """``manage.py runmqtt`` on a broker and topic of the test's own."""

    def __init__(self, broker: MqttBroker) -> None:
        self.broker = broker
        self.client_id = f"qf-test-runmqtt-{uuid.uuid4().hex[:10]}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, probe: Any) -> None:
        environment = {
            **os.environ,
            "DJANGO_ENV": "test",
            "DATABASE_URL": url_of_test_database(),
            "LOG_LEVEL": "WARNING",
            "EMQX_HOST": self.broker.host,
            "EMQX_PORT": str(self.broker.port),
            "MQTT_TOPIC": self.broker.topic,
            "MQTT_CLIENT_ID": self.client_id,
            "MQTT_SESSION_EXPIRY": "300",
        }
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runmqtt"],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
        )
        # Subscribed once a probe message lands: probes sent before are dropped unread.
        publisher = Publisher(self.broker.host, self.broker.port)
        deadline = time.monotonic() + 30
        try:
            while not probe.landed():
                assert self.process.poll() is None, "runmqtt exited at start"
                assert time.monotonic() < deadline, "runmqtt did not subscribe"
                publisher.send(self.broker.topic_of(PROBE_TOKEN), {"probe": True})
                time.sleep(0.1)
        finally:
            publisher.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=40)
        return self.process.returncode, output.decode()


class Probe:
    def __init__(self, tenant: Any) -> None:
        self.device, _ = device_services.create_device(
            tenant=tenant, name="Probe", token=PROBE_TOKEN
        )
        self.seen = 0

    def landed(self) -> bool:
        count = Telemetry.objects.filter(device=self.device).count()
        landed, self.seen = count > self.seen, count
        return landed


@pytest.fixture
def consumer_process(mqtt_broker: MqttBroker, tenant_a: Any) -> Iterator[Any]:
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs a database server, not an in-memory SQLite")
    consumer = ConsumerProcess(mqtt_broker)
    probe = Probe(tenant_a.tenant)
    yield consumer, probe
    if consumer.process is not None and consumer.process.poll() is None:
        consumer.kill()
    forget_session(mqtt_broker.host, mqtt_broker.port, consumer.client_id)


def expected_timestamps() -> set[datetime]:
    stamps: set[datetime] = set()
    second = 0
    for index in range(MESSAGES):
        points = GATEWAY_POINTS if index % 10 == 0 else 1
        stamps.update(T0 + timedelta(seconds=second + n) for n in range(points))
        second += points
    return stamps


def publish_stream(publisher: Publisher, topic: str, on_half: Any) -> None:
    """MESSAGES messages at a steady pace; ``on_half`` runs halfway through."""
    second = 0
    for index in range(MESSAGES):
        if index == MESSAGES // 2:
            on_half()
        if index % 10 == 0:
            payload: Any = [
                {"ts": iso(T0 + timedelta(seconds=second + n)), "data": {"i": index, "n": n}}
                for n in range(GATEWAY_POINTS)
            ]
            second += GATEWAY_POINTS
        else:
            payload = {"ts": iso(T0 + timedelta(seconds=second)), "data": {"i": index}}
            second += 1
        publisher.send(topic, payload)
        time.sleep(0.002)
    publisher.flush()


def test_a_consumer_killed_mid_stream_loses_and_repeats_nothing(
    consumer_process, mqtt_broker, mqtt_device
):
    consumer, probe = consumer_process
    consumer.start(probe)
    publisher = Publisher(mqtt_broker.host, mqtt_broker.port)
    rows_at_kill: list[int] = []

    def kill() -> None:
        # Killed with messages in flight: received, maybe committed, not all acknowledged.
        consumer.kill()
        rows_at_kill.append(Telemetry.objects.filter(device=mqtt_device).count())

    publish_stream(publisher, mqtt_broker.topic_of(MQTT_TOKEN), kill)
    publisher.close()
    # Everything after the kill waited in the broker, in the consumer's session.
    consumer.start(probe)
    expected = expected_timestamps()
    stored = Telemetry.objects.filter(device=mqtt_device)
    wait_until(lambda: stored.count() >= len(expected), what="every point")
    returncode, output = consumer.stop()

    assert 0 < rows_at_kill[0] < len(expected)
    assert stored.count() == len(expected)
    assert set(stored.values_list("ts", flat=True)) == expected
    assert returncode == 0
    assert "runmqtt:" in output


class OwnBroker:
    """A Mosquitto of the test's own on a free port, with persistence, to stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "log_dest none\n"
            # Started as root, Mosquitto runs as another user, who could not write here.
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603  (this test's own command)
            ["mosquitto", "-c", str(self.config)],  # noqa: S607
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_answers("127.0.0.1", self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        # SIGTERM: Mosquitto writes its sessions and queued messages to disk first.
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    if connection.vendor != "postgresql":
        pytest.skip("the consumer's thread needs a database that several connections can share")
    try:
        broker = OwnBroker(tmp_path)
        broker.start()
    except FileNotFoundError:
        pytest.skip("the mosquitto binary is not installed")
    yield broker
    if broker.process is not None and broker.process.poll() is None:
        broker.stop()


def test_the_consumer_survives_a_broker_restart(own_broker, start_consumer, mqtt_device):
    broker = MqttBroker("127.0.0.1", own_broker.port, "ingest/+")
    running = start_consumer(host=broker.host, port=broker.port, topic=broker.topic)
    topic = broker.topic_of(MQTT_TOKEN)

    publisher = Publisher(broker.host, broker.port)
    for second in range(10):
        publisher.send(topic, {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))})
    publisher.close()
    wait_until(lambda: running.totals.acknowledged == 10, what="ten PUBACKs")

    own_broker.stop()
    wait_until(lambda: not running.consumer.subscribed.is_set(), what="the lost connection")
    own_broker.start()
    # Published before the consumer is back: the restored session keeps them for it.
    publisher = Publisher(broker.host, broker.port)
    for second in range(10, 20):
        publisher.send(topic, {"data": {"n": second}, "ts": iso(T0 + timedelta(seconds=second))})
    publisher.close()

    stored = Telemetry.objects.filter(device=mqtt_device)
    wait_until(lambda: stored.count() == 20, what="twenty points")
    # PUBACKs still on their way when the broker stopped bring those messages back:
    # they are acknowledged again as duplicates, never stored twice.
    totals = running.totals
    wait_until(lambda: totals.acknowledged == totals.messages, what="every PUBACK")
    assert (totals.stored, totals.duplicates) == (20, totals.messages - 20)
    assert set(stored.values_list("data__n", flat=True)) == set(range(20))
