"""MQTT benchmark: messages committed per second through runmqtt, next to the broker and COPY.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL
and the ``mosquitto`` binary::

    .venv/bin/python bench/mqtt_bench.py                        # about a minute
    .venv/bin/python bench/mqtt_bench.py --messages 20000 --devices 200
    .venv/bin/python bench/mqtt_bench.py --consumers 2    # two runmqtt, one shared subscription

It recreates its own database (``--database-url``, else ``BENCH_DATABASE_URL``, else
``postgres://postgres@127.0.0.1:5432/quantumfleet_bench_mqtt``) and starts a Mosquitto
of its own on a free port, configured not to drop queued messages (``--broker
host:port`` uses a running broker instead; its queue limits then apply).

A publisher in a separate process sends the messages at QoS 1 from many device tokens
into a persistent session whose subscriber is away; the subscriber then connects and
takes the whole backlog, as fast as it can. That is done twice with the same messages:
for a subscriber that only counts them (the broker's own delivery rate) and for
``manage.py runmqtt``, started as deployed, which stores and acknowledges each one.
Draining a backlog measures the consumer, not the publisher, which in Python on the same
machine is slower than either. It prints one table; docs/benchmarks.md explains the rows.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import telemetry_bench as common
from telemetry_bench import BenchError, Figure, Report, scalar
from teltonika_bench import copy_rate_of_stored_rows, port_open

logger = logging.getLogger("bench.mqtt")

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/quantumfleet_bench_mqtt"
TENANT_SLUG = "bench-mqtt"
TOKEN_PREFIX = "qf-bench-mqtt-device-"  # noqa: S105  (the benchmark's own devices)
TOPIC_ROOT = "bench-ingest"
PROBE_TOKEN = "qf-bench-mqtt-probe-0001"  # noqa: S105
CONSUMER_CLIENT_ID = "quantumfleet-bench-consumer"
SHARED_GROUP = "quantumfleet-bench"
# The consumer's default: the subscriber that stores nothing gets the same window.
RECEIVE_MAXIMUM = 10_000
PUBLISHER_INFLIGHT = 1_000
START_TIMEOUT = 30.0
POLL_SECONDS = 0.1
# Messages the publisher queues ahead of the broker's acknowledgements.
PUBLISHER_QUEUE = 30_000


# -- The publisher: this script run again as its own process -------------------------------


def publisher_main(args: argparse.Namespace) -> int:
    """Publish ``--messages`` messages once told to; print how long the broker took them."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    payloads = message_payloads(args.messages, args.devices)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"qf-bench-publisher-{os.getpid()}")
    client.max_inflight_messages_set(PUBLISHER_INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect(args.broker_host, args.broker_port)
    client.loop_start()
    # Generating the messages is not timed: the caller says go once this line is read.
    answer("ready")
    sys.stdin.readline()
    started = time.perf_counter()
    infos: list[mqtt.MQTTMessageInfo] = []
    for number, (topic, payload) in enumerate(payloads):
        # Packet ids wrap at 65,535: a message still queued under an id that comes round
        # again would be refused, so the queue is kept well below that.
        if number >= PUBLISHER_QUEUE:
            infos[number - PUBLISHER_QUEUE].wait_for_publish(120)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - started
    unconfirmed = sum(1 for info in infos if not info.is_published())
    client.disconnect()
    client.loop_stop()
    answer(json.dumps({"seconds": elapsed, "unconfirmed": unconfirmed}))
    return 0


def answer(line: str) -> None:
    """A line to the parent process, which reads the publisher's standard output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def message_payloads(messages: int, devices: int) -> list[tuple[str, bytes]]:
    """Topic and payload of each message: devices in turn, each point at its own time."""
    rounds = -(-messages // devices)
    first = datetime.now(UTC) - timedelta(seconds=10 * rounds)
    payloads = []
    for number in range(messages):
        device, step = number % devices, number // devices
        ts = first + timedelta(seconds=10 * step, milliseconds=device)
        body = {"ts": ts.isoformat(), "data": common.teltonika_data(device, step)}
        topic = f"{TOPIC_ROOT}/{TOKEN_PREFIX}{device + 1:04d}"
        payloads.append((topic, json.dumps(body, separators=(",", ":")).encode()))
    return payloads


class PublisherProcess:
    """The publisher, started and ready; ``go`` starts the timed publishing."""

    def __init__(self, args: argparse.Namespace, host: str, port: int) -> None:
        command = [
            sys.executable,
            __file__,
            "--publisher",
            f"--broker={host}:{port}",
            f"--messages={args.messages}",
            f"--devices={args.devices}",
        ]
        # The command is this script with its own arguments, not outside input.
        self.process = subprocess.Popen(  # noqa: S603
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        if self.process.stdout.readline().strip() != "ready":
            raise BenchError("the publisher did not start")

    def go(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return time.perf_counter()

    def result(self) -> dict[str, Any]:
        output, _ = self.process.communicate(timeout=600)
        if self.process.returncode != 0:
            raise BenchError("the publisher failed")
        result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        if result["unconfirmed"]:
            raise BenchError(f"the broker did not confirm {result['unconfirmed']} messages")
        return result


# -- The broker ------------------------------------------------------------------------------


@contextlib.contextmanager
def own_broker() -> Iterator[tuple[str, int]]:
    """A Mosquitto on a free port for the block, that queues without limit."""
    port = common.free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # Mosquitto drops QoS 1 messages beyond 1,000 queued for a client by default;
            # a publisher faster than the consumer would lose some.
            "max_queued_messages 0\n"
            "log_dest none\n"
            # Started as root, Mosquitto switches to another user unless told this.
            f"user {getpass.getuser()}\n"
        )
        try:
            process = subprocess.Popen(["mosquitto", "-c", str(config)])  # noqa: S603, S607
        except FileNotFoundError:
            raise BenchError("mosquitto is not installed; or pass --broker host:port") from None
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not port_open(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("mosquitto did not start")
                time.sleep(0.1)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(10)


# -- 1. The broker's delivery rate to a subscriber that stores nothing -----------------------


class CountingSubscriber:
    """An MQTT 5 subscriber at QoS 1 that acknowledges each message at once, and counts.

    It uses the consumer's own paho client (chunked reads, no message objects), so that
    the two rates compare the storing and not two ways of reading the socket.

    Its session outlives its connection, so messages published while it is away wait
    for it in the broker, as they do for runmqtt.
    """

    def __init__(self, host: str, port: int, expected: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from ingest_daemons.mqtt.buffered_client import BufferedClient

        self.host, self.port = host, port
        self.expected = expected
        self.received = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id="qf-bench-counting-subscriber",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_publish_received = self.on_publish_received
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def connect(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        properties.SessionExpiryInterval = 600
        self.client.connect(self.host, self.port, clean_start=False, properties=properties)
        self.client.loop_start()

    def subscribe(self) -> None:
        self.client.subscribe(f"{TOPIC_ROOT}/+", qos=1)
        if not self.subscribed.wait(START_TIMEOUT):
            raise BenchError("the counting subscriber did not subscribe")

    def on_publish_received(self, mid: int, qos: int, topic: bytes, payload: bytes) -> None:
        self.received += 1
        if self.received == 1:
            self.first_at = time.perf_counter()
        if self.received == self.expected:
            self.last_at = time.perf_counter()
            self.done.set()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_backlog(args: argparse.Namespace, host: str, port: int) -> float:
    """Publish every message; returns the publisher's rate (broker PUBACKs per second)."""
    publisher = PublisherProcess(args, host, port)
    publisher.go()
    return float(args.messages / publisher.result()["seconds"])


def measure_broker(report: Report, args: argparse.Namespace, host: str, port: int) -> float:
    """Messages per second the broker delivers from a backlog to a do-nothing subscriber."""
    subscriber = CountingSubscriber(host, port, args.messages)
    subscriber.connect()
    subscriber.subscribe()
    subscriber.disconnect()
    publishing = publish_backlog(args, host, port)
    report.add(Figure("publisher alone, QoS 1 (broker PUBACKs)", f"{publishing:,.0f} msgs/s"))

    subscriber.connect()
    try:
        if not subscriber.done.wait(600):
            raise BenchError(f"the subscriber got {subscriber.received} of {args.messages}")
    finally:
        subscriber.disconnect()
    delivery = float((args.messages - 1) / (subscriber.last_at - subscriber.first_at))
    report.add(Figure("broker delivery to a do-nothing subscriber", f"{delivery:,.0f} msgs/s"))
    return delivery


# -- 2. The consumer, end to end -----------------------------------------------------------------


@contextlib.contextmanager
def running_consumers(
    database_url: str, host: str, port: int, members: Sequence[int], consumers: int
) -> Iterator[list[subprocess.Popen[str]]]:
    """``manage.py runmqtt`` processes on the broker for the block; stopped with SIGTERM.

    ``members`` are the indexes of the consumers to start, of ``consumers`` in all: with
    more than one, each has its own client id and they share one subscription.
    """
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(running_consumer(database_url, host, port, member, consumers))
            for member in members
        ]


@contextlib.contextmanager
def running_consumer(
    database_url: str, host: str, port: int, member: int, consumers: int
) -> Iterator[subprocess.Popen[str]]:
    """One ``manage.py runmqtt`` for the block; stopped with SIGTERM."""
    environment = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        "EMQX_HOST": host,
        "EMQX_PORT": str(port),
        "MQTT_TOPIC": f"{TOPIC_ROOT}/+",
        "MQTT_CLIENT_ID": f"{CONSUMER_CLIENT_ID}-{member}",
        "MQTT_SESSION_EXPIRY": "600",
        "MQTT_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
    }
    if consumers > 1:
        environment["MQTT_SHARED_GROUP"] = SHARED_GROUP
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runmqtt"],
            cwd=common.REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            yield process
        except BaseException:
            logger.error("runmqtt log:\n%s", common.log_tail(log))
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()


def wait_for_subscription(process: subprocess.Popen[str], host: str, port: int) -> None:
    """Probe messages until one more is stored: before the subscription they go nowhere.

    Of a shared subscription, the broker hands probes in turn to every member, away or
    not; only the member just started stores one now.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="qf-bench-probe")
    probe.connect(host, port)
    probe.loop_start()
    before = scalar("SELECT count(*) FROM telemetry")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while scalar("SELECT count(*) FROM telemetry") == before:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError("runmqtt did not subscribe")
            probe.publish(f"{TOPIC_ROOT}/{PROBE_TOKEN}", b'{"probe": 1}', qos=1)
            time.sleep(0.2)
    finally:
        probe.disconnect()
        probe.loop_stop()


def stored_by_fleet(tenant_id: int) -> int:
    # Per-device counters kept by the ingest service: far cheaper than counting telemetry
    # while the consumer writes to it.
    return int(
        scalar(
            "SELECT coalesce(sum(point_count), 0) FROM device_state s "
            "JOIN devices d ON d.id = s.device_id WHERE d.tenant_id = %s",
            [tenant_id],
        )
    )


def measure_consumer(
    report: Report, args: argparse.Namespace, database_url: str, broker: tuple[str, int]
) -> float:
    """Messages per second runmqtt stores and acknowledges, draining the same backlog."""
    host, port = broker
    tenant_id = int(scalar("SELECT id FROM tenants WHERE slug = %s", [TENANT_SLUG]))
    # A first run of each consumer creates its session and subscription, then stops.
    for member in range(args.consumers):
        with running_consumer(database_url, host, port, member, args.consumers) as consumer:
            wait_for_subscription(consumer, host, port)
    publish_backlog(args, host, port)

    members = range(args.consumers)
    with running_consumers(database_url, host, port, members, args.consumers) as consumers:
        deadline = time.monotonic() + 600

        def stopped() -> bool:
            return any(consumer.poll() is not None for consumer in consumers)

        while not (first := stored_by_fleet(tenant_id)):
            if stopped() or time.monotonic() > deadline:
                raise BenchError("runmqtt stored nothing")
            time.sleep(POLL_SECONDS / 10)
        first_at = time.perf_counter()
        while (stored := stored_by_fleet(tenant_id)) < args.messages:
            if stopped() or time.monotonic() > deadline:
                raise BenchError(f"runmqtt stored {stored} of {args.messages} messages")
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - first_at
        summaries = []
        for consumer in consumers:
            consumer.send_signal(signal.SIGTERM)
        for consumer in consumers:
            summary, _ = consumer.communicate(timeout=40)
            summaries.append(summary.strip())
    if stored != args.messages:
        raise BenchError(f"{args.messages} messages published but {stored} points stored.")
    rate = float((args.messages - first) / elapsed)
    shape = "" if args.consumers == 1 else f", {args.consumers} sharing one subscription"
    report.add(
        Figure(
            f"runmqtt msgs committed/s (PUBACK after commit){shape}",
            f"{rate:,.0f} msgs/s",
            target=">= 15,000/s",
            met=rate >= 15_000,
        )
    )
    report.notes.extend(f"consumer: {summary}" for summary in summaries)
    return rate


# -- Running it ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--messages", type=int, default=200_000, help="Messages per step.")
    parser.add_argument("--devices", type=int, default=1_000, help="Device tokens in turn.")
    parser.add_argument("--broker", help="host:port of a running broker (default: its own).")
    parser.add_argument(
        "--consumers",
        type=int,
        default=1,
        help="runmqtt processes; more than one share one subscription (MQTT_SHARED_GROUP).",
    )
    parser.add_argument("--keep-database", dest="drop_database", action="store_false")
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.broker_host, args.broker_port = None, None
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        args.broker_host, args.broker_port = host, int(port)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.publisher:
        return publisher_main(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = common.recreate_database(args.database_url)
    report = Report(
        header=[
            f"Quantum Fleet MQTT benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"database: {name}",
        ]
    )
    started = time.monotonic()
    try:
        common.setup_django(args.database_url)
        report.header.extend(common.server_facts())
        fleet = common.create_fleet(TENANT_SLUG, args.devices, TOKEN_PREFIX)
        register_probe()
        with broker_for(args) as broker:
            delivery = measure_broker(report, args, *broker)
            rate = measure_consumer(report, args, args.database_url, broker)
        report.figures[-1].ratio = f"{rate / delivery:.2f} of broker delivery"
        ceiling = copy_rate_of_stored_rows()
        report.add(Figure("COPY of the same rows", f"{ceiling:,.0f} rows/s"))
        report.notes.append(f"runmqtt / COPY: {rate / ceiling:.2f}")
        report.notes.append(
            f"load: {args.messages:,} messages of one point, {args.devices:,} device tokens, "
            f"QoS 1, publisher in its own process; fleet tenant {fleet.tenant_id}"
        )
    finally:
        if args.drop_database:
            common.close_django_connections()
            common.drop_database(args.database_url, name)
    report.notes.append(f"total time: {time.monotonic() - started:.0f} s")
    sys.stdout.write(report.render())
    return 0


def register_probe() -> None:
    """The device whose messages tell that runmqtt is subscribed, outside the fleet."""
    from apps.devices.services import create_device
    from apps.tenants.services import create_tenant

    tenant = create_tenant(name="Benchmark MQTT probe", slug=f"{TENANT_SLUG}-probe")
    create_device(tenant=tenant, token=PROBE_TOKEN, name="probe")


@contextlib.contextmanager
def broker_for(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    if args.broker_host:
        yield args.broker_host, args.broker_port
        return
    with own_broker() as broker:
        yield broker


if __name__ == "__main__":
    sys.exit(main())
