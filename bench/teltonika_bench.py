"""Teltonika benchmark: records committed per second over TCP next to COPY, decode rate, memory.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL::

    .venv/bin/python bench/teltonika_bench.py              # about 3 minutes
    .venv/bin/python bench/teltonika_bench.py --devices 500 --duration 30

It recreates its own database (``--database-url``, else ``BENCH_DATABASE_URL``, else
``postgres://postgres@127.0.0.1:5432/quantumfleet_bench_teltonika``), starts
``manage.py runteltonika`` as a separate process, and drives it with ``manage.py
simteltonika`` in another, so the daemon is measured as deployed. It prints one table;
docs/benchmarks.md explains each row and records the figures measured so far.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import telemetry_bench as common
from telemetry_bench import BenchError, Figure, Report, execute, scalar

logger = logging.getLogger("bench.teltonika")

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/quantumfleet_bench_teltonika"
TENANT_SLUG = "bench-teltonika"
FIRST_IMEI = 350_000_000_000_000
DECODE_FRAMES = 2_000
RECORDS_PER_FRAME = 10
DAEMON_START_TIMEOUT = 30.0
IDLE_SETTLE_SECONDS = 3.0
TCP_LISTEN = "0A"  # the LISTEN state in /proc/net/tcp


def register_trackers(count: int) -> int:
    """A tenant with ``count`` FMC650 trackers whose IMEIs count up from FIRST_IMEI."""
    from apps.devices.models import Device, DeviceProtocol
    from apps.devices.services import generate_device_token, set_device_token
    from apps.tenants.services import create_tenant

    tenant = create_tenant(name="Benchmark Teltonika", slug=TENANT_SLUG)
    # A benchmark measures capacity: its tenant's rate limits are lifted, as an operator
    # would for a tenant this large. The limiter still runs for every batch.
    tenant.device_points_per_minute = tenant.tenant_points_per_minute = 0
    tenant.save(update_fields=["device_points_per_minute", "tenant_points_per_minute"])
    devices = []
    for number in range(count):
        device = Device(
            tenant=tenant,
            name=f"tracker-{number:05d}",
            external_id=str(FIRST_IMEI + number),
            model="FMC650",
            protocol=DeviceProtocol.TELTONIKA,
        )
        set_device_token(device, generate_device_token())
        devices.append(device)
    Device.objects.bulk_create(devices, batch_size=2_000)
    return int(tenant.pk)


@contextmanager
def running_daemon(database_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py runteltonika`` on 127.0.0.1:port for the block."""
    with running_daemons(database_url, port, 1) as (daemon,):
        yield daemon


@contextmanager
def running_daemons(
    database_url: str, port: int, count: int
) -> Iterator[tuple[subprocess.Popen[bytes], ...]]:
    """``count`` daemons on 127.0.0.1:port for the block, sharing it when more than one."""
    environment = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
    }
    command = [
        sys.executable,
        "manage.py",
        "runteltonika",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-udp",
    ]
    if count > 1:
        command.append("--share-port")
    with ExitStack() as stack:
        daemons = []
        for number in range(1, count + 1):
            log = stack.enter_context(tempfile.TemporaryFile())
            # The command is built from this script's own values, not from outside input.
            process = subprocess.Popen(  # noqa: S603
                command, cwd=common.REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
            stack.callback(stop_daemon, process)
            deadline = time.monotonic() + DAEMON_START_TIMEOUT
            # Each daemon sharing the port has a listening socket of its own.
            while listening_sockets(port) < number:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"runteltonika did not start:\n{common.log_tail(log)}")
                time.sleep(0.2)
            daemons.append(process)
        yield tuple(daemons)


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()


def listening_sockets(port: int) -> int:
    """TCP sockets of this machine listening on ``port`` (from /proc/net/tcp)."""
    listening = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == TCP_LISTEN:
            listening += 1
    return listening


def port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far (from /proc)."""
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / os.sysconf("SC_CLK_TCK")


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise BenchError("VmRSS not found")
    return int(match.group(1))


def measure_end_to_end(report: Report, args: argparse.Namespace, database_url: str) -> None:
    """Records acknowledged per second through the daemon, next to COPY of those rows."""
    port = common.free_port()
    with running_daemons(database_url, port, args.daemons) as daemons:
        command = [
            sys.executable,
            "manage.py",
            "simteltonika",
            "--port",
            str(port),
            "--imei",
            str(FIRST_IMEI),
            "--devices",
            str(args.devices),
            "--records-per-packet",
            str(args.records_per_packet),
            "--duration",
            str(args.duration),
        ]
        environment = {**os.environ, "DJANGO_ENV": "test", "DATABASE_URL": database_url}
        before = scalar("SELECT count(*) FROM telemetry")
        daemon_cpu_before = sum(cpu_seconds(daemon.pid) for daemon in daemons)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        # The simulator is its own process: it must not share a core's time with the
        # daemon's event loop inside one interpreter.
        finished = subprocess.run(  # noqa: S603
            command, cwd=common.REPO_ROOT, env=environment, capture_output=True, check=False
        )
        elapsed = time.perf_counter() - started
        daemon_cpu = sum(cpu_seconds(daemon.pid) for daemon in daemons) - daemon_cpu_before
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The simulator is the only child that ended in between: its whole CPU time.
    simulator_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    if finished.returncode != 0:
        raise BenchError(f"simteltonika failed:\n{finished.stderr.decode()[-2000:]}")
    summary = finished.stdout.decode().strip()
    acknowledged = acknowledged_records(summary)
    stored = scalar("SELECT count(*) FROM telemetry") - before
    if stored != acknowledged:
        raise BenchError(f"{acknowledged} records acknowledged but {stored} stored.")
    rate = acknowledged / args.duration

    ceiling = copy_rate_of_stored_rows()
    report.add(
        Figure(
            "TCP records committed/s (ACK after commit)"
            + (f", {args.daemons} daemons sharing the port" if args.daemons > 1 else ""),
            f"{rate:,.0f}/s",
            f"{rate / ceiling:.2f} of COPY",
            ">= 0.50",
            rate / ceiling >= 0.5,
        )
    )
    report.add(Figure("COPY of the same rows", f"{ceiling:,.0f} rows/s"))
    report.notes.append(
        f"load: {args.devices} trackers, {args.records_per_packet} records per packet, "
        f"{args.daemons} daemon(s), "
        f"{args.duration:.0f} s ({elapsed:.1f} s with connecting); simulator: {summary}"
    )
    report.notes.append(
        f"CPU per acknowledged record: daemon {daemon_cpu / acknowledged * 1e6:.1f} µs "
        f"({daemon_cpu / elapsed:.2f} of a core), simulator "
        f"{simulator_cpu / acknowledged * 1e6:.1f} µs ({simulator_cpu / elapsed:.2f} of a core)"
    )


def acknowledged_records(simulator_summary: str) -> int:
    """The records ``simteltonika`` reports acknowledged, from its summary line."""
    match = re.search(r"([\d,]+) records", simulator_summary)
    if match is None:
        raise BenchError(f"no record count in the simulator's summary: {simulator_summary!r}")
    return int(match.group(1).replace(",", ""))


def copy_rate_of_stored_rows() -> float:
    """COPY of exactly the rows the daemon stored, into a table identical to telemetry."""
    from django.db import connection

    common.create_scratch_tables()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY (SELECT {common.TELEMETRY_COLUMNS} FROM telemetry) TO STDOUT"  # noqa: S608
        ) as copy,
    ):
        payload = b"".join(bytes(chunk) for chunk in copy)
    rows = payload.count(b"\n")
    rates = [common.copy_ceiling_rate(payload, rows) for _ in range(3)]
    execute("DROP TABLE bench_copy_ceiling, bench_copy_plain CASCADE")
    return sorted(rates)[1]


def measure_decoding(report: Report) -> None:
    """Records decoded per second by the codec alone, on one core."""
    from ingest_daemons.teltonika import codec
    from ingest_daemons.teltonika.simulator import Route, make_record

    route = Route(-33.41, -70.61, 60.0)
    frames = []
    timestamp_ms = int(time.time() * 1000)
    for _ in range(DECODE_FRAMES):
        records = []
        for _ in range(RECORDS_PER_FRAME):
            timestamp_ms += 1000
            records.append(make_record(route, timestamp_ms))
            route.advance(1)
        frames.append(codec.encode_avl_frame(codec.CODEC_8E, records))
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        decoded = sum(len(codec.decode_avl_frame(frame).records) for frame in frames)
        best = max(best, decoded / (time.perf_counter() - started))
    report.add(Figure("codec decode, one core (8E, 8 I/O each)", f"{best:,.0f} records/s"))


def measure_idle_memory(report: Report, args: argparse.Namespace, database_url: str) -> None:
    """Resident memory the daemon adds per idle, handshaken connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.idle_connections + 100
    if hard < needed:
        report.add(Figure("memory per idle connection", f"skipped: open-file limit {hard}"))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    port = common.free_port()
    with running_daemon(database_url, port) as daemon:
        time.sleep(IDLE_SETTLE_SECONDS)
        before = resident_kib(daemon.pid)
        asyncio.run(hold_idle_connections(port, args.idle_connections, daemon.pid, report, before))


async def hold_idle_connections(
    port: int, count: int, pid: int, report: Report, before_kib: int
) -> None:
    from ingest_daemons.teltonika import codec

    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for start in range(0, count, 500):
            opened = await asyncio.gather(
                *(
                    open_one(port, FIRST_IMEI + number, codec.encode_imei)
                    for number in range(start, min(start + 500, count))
                )
            )
            connections.extend(opened)
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        after = resident_kib(pid)
        per_connection = (after - before_kib) * 1024 / count
        report.add(
            Figure(
                f"memory per idle connection ({count:,} open)",
                f"{per_connection / 1024:.1f} KiB",
                f"{before_kib / 1024:.0f} -> {after / 1024:.0f} MiB",
                "< 60 KB",
                per_connection < 60_000,
            )
        )
    finally:
        for _, writer in connections:
            writer.close()


async def open_one(
    port: int, imei: int, encode_imei: object
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_imei(str(imei)))  # type: ignore[operator]
    await writer.drain()
    if await reader.readexactly(1) != b"\x01":
        raise BenchError(f"IMEI {imei} refused")
    return reader, writer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--devices", type=int, default=200, help="Simulated trackers.")
    parser.add_argument("--records-per-packet", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of load.")
    parser.add_argument(
        "--daemons",
        type=int,
        default=1,
        help="runteltonika processes sharing the port (--share-port) for the load.",
    )
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--keep-database", dest="drop_database", action="store_false")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = common.recreate_database(args.database_url)
    report = Report(
        header=[
            f"Quantum Fleet Teltonika benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"database: {name}",
        ]
    )
    started = time.monotonic()
    try:
        common.setup_django(args.database_url)
        report.header.extend(common.server_facts())
        register_trackers(max(args.devices, args.idle_connections))
        measure_decoding(report)
        measure_end_to_end(report, args, args.database_url)
        measure_idle_memory(report, args, args.database_url)
    finally:
        if args.drop_database:
            common.close_django_connections()
            common.drop_database(args.database_url, name)
    report.notes.append(f"total time: {time.monotonic() - started:.0f} s")
    sys.stdout.write(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
