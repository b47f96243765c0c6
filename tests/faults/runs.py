"""Fault runs: a load of devices on one transport while a fault happens, then a count.

A run seeds a tenant and its devices in the private database, starts the process that
receives the transport (gunicorn with the project's gunicorn.conf.py, ``manage.py
runmqtt`` or ``manage.py runteltonika``), lets every device send its points until each is
acknowledged, injects one fault once part of the load is acknowledged, and finally
compares the devices' ledger with the rows stored:

- ``lost``: points a device saw acknowledged that are not stored;
- ``duplicates``: rows beyond the first for one point;
- ``unexpected``: rows that are no point of the load (none should exist).

The faults: ``kill`` (SIGKILL of the receiving process and everything it started, then a
restart), ``postgres`` (an immediate, crash-like stop of PostgreSQL, then a start),
``redis`` (Redis killed and started empty), ``broker`` (Mosquitto stopped and started
again with its persistence) and ``reboot`` (the MQTT consumer stopped, the broker
restarted while it is away, the consumer started again, as a host restart does). Nothing
here imports Django: the processes under test are separate, as in production.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.faults.senders import (
    Device,
    HttpDevice,
    Ledger,
    MqttDevice,
    PlannedPoint,
    TeltonikaDevice,
    plan_points,
    run_devices,
)
from tests.faults.services import (
    START_TIMEOUT,
    PrivateServices,
    free_port,
    kill_process_group,
    port_answers,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS = {
    "http": ("kill", "postgres", "redis"),
    "mqtt": ("kill", "postgres", "redis", "broker", "reboot"),
    "teltonika": ("kill", "postgres", "redis"),
}
# Points sent per request (HTTP), per message (MQTT) and per packet (Teltonika).
CHUNKS = {"http": 10, "mqtt": 1, "teltonika": 5}
# The consumer's session on the broker: it must outlive a consumer that is killed.
MQTT_CLIENT_ID = "qf-fault-runmqtt"
MQTT_SESSION_EXPIRY = 3600
_run_numbers = itertools.count(1)


@dataclass(frozen=True)
class Plan:
    """The size and timing of one run."""

    devices: int = 30
    points_per_device: int = 100
    # The fault starts once this share of all points is acknowledged.
    fault_after: float = 0.4
    # How long the load lasts without a fault: devices send at a steady pace, so that the
    # fault meets points on their way through every part of the path.
    load_seconds: float = 3.0
    # How long the failed process or service stays down.
    downtime: float = 1.0
    # How long the devices keep trying, and how long the database may take to catch up.
    send_timeout: float = 90.0
    settle_timeout: float = 30.0


@dataclass
class Report:
    transport: str
    fault: str
    devices: int
    sent: int
    acknowledged: int
    stored: int
    duplicates: int
    lost: int
    unexpected: int
    resent: int
    # Rows stored when the fault began: the fault must meet the stream well under way.
    stored_at_fault: int
    fault_seconds: float
    seconds: float
    # How long the devices took to have every point acknowledged.
    load_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    # Whether the receiving process ended by itself during the run.
    crashed: bool = False
    # Answers that acknowledged nothing, by kind ("HTTP 503"), and how often.
    refusals: dict[str, int] = field(default_factory=dict)
    log_tail: str = ""

    def line(self) -> str:
        return (
            f"transport={self.transport} fault={self.fault} devices={self.devices} "
            f"sent={self.sent} acknowledged={self.acknowledged} stored={self.stored} "
            f"duplicates={self.duplicates} lost={self.lost} unexpected={self.unexpected} "
            f"resent={self.resent} stored_at_fault={self.stored_at_fault} "
            f"fault_s={self.fault_seconds:.1f} load_s={self.load_seconds:.1f} "
            f"took_s={self.seconds:.1f}" + (" receiver_crashed" if self.crashed else "")
        )

    @property
    def mid_stream(self) -> bool:
        """Whether the fault met a stream well under way and far from its end."""
        return 0.05 * self.sent < self.stored_at_fault < 0.95 * self.sent

    @property
    def perfect(self) -> bool:
        return (
            self.sent == self.acknowledged == self.stored
            and self.duplicates == self.lost == self.unexpected == 0
            and not self.crashed
        )


def base_environment(services: PrivateServices) -> dict[str, str]:
    """The settings every process of a run gets: the private services, production paths."""
    assert services.postgres is not None
    assert services.redis is not None
    environment = {
        **os.environ,
        "DJANGO_ENV": "development",
        "DEBUG": "false",
        "LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "WARNING"),
        "DATABASE_URL": services.postgres.url(),
        "REDIS_URL": services.redis.url,
        "CELERY_BROKER_URL": services.redis.url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "TELEMETRY_BATCH_WRITES": "true",
        "PYTHONUNBUFFERED": "1",
    }
    if services.mosquitto is not None:
        environment.update(
            EMQX_HOST="127.0.0.1",
            EMQX_PORT=str(services.mosquitto.port),
            MQTT_TOPIC="ingest/+",
            MQTT_CLIENT_ID=MQTT_CLIENT_ID,
            MQTT_SESSION_EXPIRY=str(MQTT_SESSION_EXPIRY),
        )
    return environment


def migrate(services: PrivateServices) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=base_environment(services),
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )


class Receiver:
    """The process that receives one transport, started with its own process group."""

    def __init__(self, command: list[str], environment: dict[str, str], log: Path) -> None:
        self.command = command
        self.environment = environment
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603  (the project's own command)
                self.command,
                cwd=REPO_ROOT,
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self.ready, START_TIMEOUT, f"{self.command[2]} to start")

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{' '.join(self.command[1:3])} exited at start")
        return True

    def kill(self) -> None:
        """SIGKILL the process and everything it started (gunicorn's workers too)."""
        assert self.process is not None
        kill_process_group(self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ListeningReceiver(Receiver):
    def __init__(
        self, command: list[str], environment: dict[str, str], log: Path, port: int
    ) -> None:
        super().__init__(command, environment, log)
        self.port = port

    def ready(self) -> bool:
        return super().ready() and port_answers(self.port)


class WebReceiver(ListeningReceiver):
    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/health/live", timeout=2
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


class ConsumerReceiver(ListeningReceiver):
    """``runmqtt``: ready once its counters say it is connected to the broker."""

    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=2
            ) as answer:
                return b"\nmqtt_connected 1.0" in answer.read()
        except OSError:
            return False


def make_receiver(transport: str, services: PrivateServices, log: Path) -> Receiver:
    environment = base_environment(services)
    python = sys.executable
    if transport == "http":
        port = free_port()
        environment.update(
            API_HOST="127.0.0.1", API_PORT=str(port), WEB_WORKERS="2", WEB_THREADS="4"
        )
        command = [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "quantumfleet.wsgi"]
        return WebReceiver(command, environment, log, port)
    if transport == "mqtt":
        port = free_port()
        environment.update(MQTT_METRICS_PORT=str(port))
        return ConsumerReceiver([python, "manage.py", "runmqtt"], environment, log, port)
    if transport == "teltonika":
        port = free_port()
        environment.update(TCP_BIND="127.0.0.1", TCP_PORT=str(port), TELTONIKA_UDP="false")
        return ListeningReceiver([python, "manage.py", "runteltonika"], environment, log, port)
    raise ValueError(f"unknown transport {transport!r}")


def prime_consumer_session(port: int, protocol: str) -> None:
    """Open the consumer's persistent session and subscription before it first runs.

    From then on the broker keeps every message of ``ingest/+`` for the consumer, whether
    it is running, killed or starting, as it does for a consumer that has run before. The
    session of an earlier run is discarded first. The session is then opened as the
    consumer opens it, without a clean start: Mosquitto 2.0.11 does not restore, after a
    restart, the session of an absent MQTT 5 client that had connected with a clean start.
    """
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311

    def connect(clean: bool) -> mqtt.Client:
        if version == mqtt.MQTTv5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=MQTT_CLIENT_ID, protocol=version
            )
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0 if clean else MQTT_SESSION_EXPIRY
            client.connect("127.0.0.1", port, clean_start=clean, properties=properties)
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=MQTT_CLIENT_ID,
                protocol=version,
                clean_session=clean,
            )
            client.connect("127.0.0.1", port)
        client.loop_start()
        wait_until(client.is_connected, START_TIMEOUT, "the broker to accept the session")
        return client

    forget = connect(clean=True)
    forget.disconnect()
    forget.loop_stop()
    client = connect(clean=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    try:
        client.subscribe("ingest/+", qos=1)
        if not subscribed.wait(START_TIMEOUT):
            raise TimeoutError("the broker did not confirm the subscription")
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass(frozen=True)
class Cast:
    """The tenant and devices of one run, in the private database."""

    tenant_id: int
    keys: list[str]
    device_ids: dict[str, int]


def cast_runs(services: PrivateServices, transports: Sequence[str], devices: int) -> list[Cast]:
    """Create the tenant and devices of each run, all with one process (Django starts once)."""
    specs: list[dict[str, Any]] = []
    keys: list[list[str]] = []
    for transport in transports:
        run = f"{uuid.uuid4().hex[:8]}{next(_run_numbers):02d}"
        keys.append(device_keys(transport, run, devices))
        specs.append(
            {
                "slug": f"fault-{run}",
                "protocol": "teltonika" if transport == "teltonika" else "token",
                "devices": keys[-1],
                "rule": True,
            }
        )
    completed = subprocess.run(  # noqa: S603  (the project's own command)
        [sys.executable, "-m", "tests.faults.seed", json.dumps(specs)],
        cwd=REPO_ROOT,
        env=base_environment(services),
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return [
        Cast(result["tenant_id"], run_keys, result["devices"])
        for run_keys, result in zip(keys, results, strict=True)
    ]


def device_keys(transport: str, run: str, count: int) -> list[str]:
    """Device tokens (HTTP, MQTT) or IMEIs (Teltonika), unique to the run."""
    if transport == "teltonika":
        prefix = f"35{int(run[:8], 16) % 10**9:09d}"
        return [f"{prefix}{index:04d}" for index in range(count)]
    return [f"fault-{run}-device-{index:03d}" for index in range(count)]


def make_devices(
    transport: str, keys: list[str], ledger: Ledger, receiver: Receiver, services: PrivateServices
) -> list[Device]:
    if transport == "http":
        assert isinstance(receiver, ListeningReceiver)
        return [HttpDevice(key, ledger, receiver.port) for key in keys]
    if transport == "mqtt":
        assert services.mosquitto is not None
        port = services.mosquitto.port
        return [MqttDevice(key, ledger, port, f"ingest/{key}") for key in keys]
    assert isinstance(receiver, ListeningReceiver)
    return [TeltonikaDevice(key, ledger, receiver.port) for key in keys]


def inject(fault: str, receiver: Receiver, services: PrivateServices, downtime: float) -> None:
    if fault == "kill":
        receiver.kill()
        time.sleep(downtime)
        receiver.start()
    elif fault == "postgres":
        assert services.postgres is not None
        services.postgres.restart(downtime)
    elif fault == "redis":
        assert services.redis is not None
        services.redis.restart(downtime)
    elif fault == "broker":
        assert services.mosquitto is not None
        services.mosquitto.restart(downtime)
    elif fault == "reboot":
        # What a host or stack restart does: the consumer stops first, the broker restarts
        # while it is away, the consumer comes back.
        assert services.mosquitto is not None
        receiver.stop()
        services.mosquitto.restart(downtime)
        receiver.start()
    else:
        raise ValueError(f"unknown fault {fault!r}")


def stored_rows(services: PrivateServices, tenant_id: int) -> list[tuple[int, int, Any]]:
    """(device id, time in ms, data) of every row of the tenant."""
    assert services.postgres is not None
    with psycopg.connect(services.postgres.url(), connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT device_id, ts, data FROM telemetry WHERE tenant_id = %s", [tenant_id]
        ).fetchall()
    return [(device_id, round(ts.timestamp() * 1000), data) for device_id, ts, data in rows]


def count_rows(services: PrivateServices, tenant_id: int) -> int:
    assert services.postgres is not None
    try:
        with psycopg.connect(services.postgres.url(), connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT count(*) FROM telemetry WHERE tenant_id = %s", [tenant_id]
            ).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def settle(services: PrivateServices, tenant_id: int, expected: int, timeout: float) -> None:
    """Wait until the tenant holds ``expected`` rows, or its count stops moving."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = count_rows(services, tenant_id)
        if count >= expected:
            return
        if count != last:
            last, still_since = count, time.monotonic()
        elif time.monotonic() - still_since > 10:
            return
        time.sleep(0.1)


def run_fault(
    services: PrivateServices,
    transport: str,
    fault: str,
    plan: Plan | None = None,
    log: Callable[[str], None] | None = None,
    cast: Cast | None = None,
) -> Report:
    """One run: load, fault mid-stream, recovery, and the comparison of ledger and rows.

    ``cast`` is the run's tenant and devices (``cast_runs``), made here when not given.
    """
    plan = plan or Plan()
    if fault not in FAULTS[transport]:
        raise ValueError(f"{transport} has no fault {fault!r}; it has {FAULTS[transport]}")
    started = time.monotonic()
    if cast is None:
        cast = cast_runs(services, [transport], plan.devices)[0]
    if len(cast.keys) != plan.devices:
        raise ValueError(f"the cast has {len(cast.keys)} devices, the plan {plan.devices}")
    tenant_id, device_ids, keys = cast.tenant_id, cast.device_ids, cast.keys

    receiver = make_receiver(transport, services, services.root / f"{transport}-{fault}.log")
    if transport == "mqtt":
        assert services.mosquitto is not None
        prime_consumer_session(
            services.mosquitto.port, receiver.environment.get("MQTT_PROTOCOL", "5")
        )
    receiver.start()

    ledger = Ledger()
    # Device times a few hours back, distinct per run, so no run can meet another's rows.
    start_ms = (int(time.time()) - 6 * 3600) * 1000
    plans = {key: plan_points(plan.points_per_device, start_ms) for key in keys}
    devices = make_devices(transport, keys, ledger, receiver, services)
    total = plan.devices * plan.points_per_device
    fault_seconds = [0.0]
    stored_at_fault = [-1]
    fault_error: list[BaseException] = []

    def inject_mid_stream() -> None:
        try:
            ledger.wait_for_acknowledged(int(total * plan.fault_after), plan.send_timeout)
            stored_at_fault[0] = count_rows(services, tenant_id)
            began = time.monotonic()
            inject(fault, receiver, services, plan.downtime)
            fault_seconds[0] = time.monotonic() - began
        except BaseException as error:  # reported by the run, not lost in a thread
            fault_error.append(error)

    injector = threading.Thread(target=inject_mid_stream, name="fault", daemon=True)
    try:
        chunks = -(-plan.points_per_device // CHUNKS[transport])
        threads = run_devices(
            [(device, plans[device.key]) for device in devices],
            CHUNKS[transport],
            time.monotonic() + plan.send_timeout,
            interval=plan.load_seconds / chunks,
        )
        load_began = time.monotonic()
        injector.start()
        for thread in threads:
            thread.join(plan.send_timeout + 30)
        load_seconds = time.monotonic() - load_began
        injector.join(plan.send_timeout)
        if fault_error:
            raise fault_error[0]
        settle(services, tenant_id, ledger.acknowledged, plan.settle_timeout)
        rows = stored_rows(services, tenant_id)
        # A receiver that ended by itself crashed: only the kill fault may end it.
        crashed = receiver.process is None or receiver.process.poll() is not None
    finally:
        receiver.stop()

    report = compare(transport, fault, ledger, plans, device_ids, rows)
    report.fault_seconds = fault_seconds[0]
    report.stored_at_fault = stored_at_fault[0]
    report.seconds = time.monotonic() - started
    report.crashed = crashed
    report.load_seconds = load_seconds
    report.refusals = dict(ledger.refusals)
    report.failures = sorted(
        {reason for record in ledger.devices.values() for reason in record.failures}
    )[:10]
    if not report.perfect:
        report.log_tail = receiver.tail()
    if log is not None:
        log(report.line())
    return report


def compare(
    transport: str,
    fault: str,
    ledger: Ledger,
    plans: dict[str, list[PlannedPoint]],
    device_ids: dict[str, int],
    rows: list[tuple[int, int, Any]],
) -> Report:
    """Match every row to the point it stores, by device and device time."""
    point_at: dict[tuple[int, int], tuple[str, int]] = {}
    for key, points in plans.items():
        for point in points:
            point_at[(device_ids[key], point.ts_ms)] = (key, point.seq)
    copies: Counter[tuple[str, int]] = Counter()
    unexpected = 0
    for device_id, ts_ms, data in rows:
        # A tracker record kept at its arrival time carries the device's own stamp.
        device_ms = data.get("device_ts_ms") if isinstance(data, dict) else None
        owner = point_at.get((device_id, int(device_ms) if device_ms else ts_ms))
        if owner is None:
            unexpected += 1
        else:
            copies[owner] += 1
    acknowledged = {
        (key, seq) for key, record in ledger.devices.items() for seq in record.acknowledged
    }
    return Report(
        transport=transport,
        fault=fault,
        devices=len(plans),
        sent=ledger.sent,
        acknowledged=len(acknowledged),
        stored=len(copies),
        duplicates=sum(count - 1 for count in copies.values()),
        lost=len(acknowledged - set(copies)),
        unexpected=unexpected,
        resent=ledger.resent,
        stored_at_fault=-1,
        fault_seconds=0.0,
        seconds=0.0,
    )
