"""Telemetry benchmark: ingest rates next to PostgreSQL's COPY, HTTP rates, query latency.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL
(and ``wrk`` for the HTTP rows)::

    .venv/bin/python bench/telemetry_bench.py               # everything, about 10 minutes
    .venv/bin/python bench/telemetry_bench.py --skip-10m    # without the 10M-row step

It recreates its own database (``--database-url``, else ``BENCH_DATABASE_URL``, else
``postgres://postgres@127.0.0.1:5432/quantumfleet_bench``), migrates it, measures every
figure in the same run on the same machine and prints one table. Ratios, not absolute
rates, are what a change is judged by: machines differ. docs/benchmarks.md explains each
row and records the figures measured so far.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Project modules are imported inside the functions that use them: they need Django
# configured, and the database to configure it with comes from the command line.
if TYPE_CHECKING:
    from apps.telemetry.services import Point

logger = logging.getLogger("bench.telemetry")

REPO_ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_ingest.lua"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/quantumfleet_bench"

TELEMETRY_COLUMNS = "tenant_id, device_id, ts, received_at, data"
# Bytes handed to each COPY write: large enough that Python's share of the loop is noise.
COPY_CHUNK_BYTES = 1 << 20

# The ingest fleet: its devices answer to known tokens so the wrk script can name them.
# These are throwaway credentials of a throwaway database, not secrets.
INGEST_TENANT_SLUG = "bench-ingest"
INGEST_TOKEN_PREFIX = "qf-bench-device-"  # noqa: S105
INGEST_INTERVAL = timedelta(seconds=10)

# The query fleet: 1,000 devices, each with 1,000 points per 30 days at both table sizes,
# so that a query for one device reads the same number of rows at 1M and at 10M.
QUERY_TENANT_SLUG = "bench-query"
QUERY_DEVICES = 1000
QUERY_WINDOW = timedelta(days=30)
QUERY_POINTS_PER_WINDOW = 1000
QUERY_INTERVAL = QUERY_WINDOW / QUERY_POINTS_PER_WINDOW
SMALL_STEPS = 1000  # 1M rows: 30 days of history
LARGE_STEPS = 10_000  # 10M rows: 300 days
# Steps loaded per COPY and per commit while generating history.
HISTORY_STEPS_PER_COMMIT = 250
QUERY_WARMUP_REQUESTS = 10

HTTP_WARMUP_SECONDS = 3
# Time for requests still in the workers when wrk stops to finish their commit.
HTTP_SETTLE_SECONDS = 1.0
SERVER_START_TIMEOUT_SECONDS = 30.0


class BenchError(RuntimeError):
    """A measurement that cannot be trusted: wrong counts, a server that did not start."""


# -- The table --------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the printed table."""

    measure: str
    result: str
    ratio: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    """Every figure of one run, printed together at the end."""

    header: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        logger.info("%s: %s %s", figure.measure, figure.result, figure.ratio)

    def render(self) -> str:
        names = ("Measure", "Result", "Ratio", "Target", "Met")
        cells = [(f.measure, f.result, f.ratio, f.target, met_text(f.met)) for f in self.figures]
        widths = [max(len(row[i]) for row in [names, *cells]) for i in range(len(names))]

        def line(row: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"

        rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        body = [line(names), rule, *(line(row) for row in cells)]
        return "\n".join([*self.header, "", *body, "", *self.notes]) + "\n"


def met_text(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def rate_text(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def ms_text(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- Generated data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One generated point of one device."""

    device_id: int
    ts: datetime
    data: dict[str, Any]


def teltonika_data(device_index: int, step: int) -> dict[str, Any]:
    """AVL data shaped like a Teltonika record: the GPS element and eleven IO elements.

    Deterministic in (device, step), so a run can be reproduced exactly, and varied
    enough that values are not one repeated constant.
    """
    mix = (device_index * 7_919 + step * 104_729) % 1_000_003
    moving = mix % 10 != 0
    speed = mix % 121 if moving else 0
    return {
        "gps": {
            "lat": round(54.5 + (device_index % 40) * 0.01 + (step % 500) * 0.0001, 6),
            "lon": round(25.0 + (device_index // 40) * 0.01 + (mix % 700) * 0.0001, 6),
            "alt": 80 + mix % 220,
            "angle": (step * 7 + device_index * 3) % 360,
            "sat": 4 + mix % 16,
            "speed": speed,
        },
        # Keys are AVL IO ids: odometer, GSM signal, external and battery voltage, battery
        # current, GNSS status, PDOP, HDOP, sleep mode, ignition, movement.
        "io": {
            "16": 1_000_000 + step * 150 + device_index,
            "21": 1 + mix % 5,
            "66": 12_000 + mix % 2_500,
            "67": 3_900 + mix % 200,
            "68": mix % 500,
            "69": 1,
            "181": 5 + mix % 25,
            "182": 5 + mix % 20,
            "200": 0,
            "239": int(moving),
            "240": int(moving),
        },
    }


def ingest_readings(device_ids: Sequence[int], rows: int, end: datetime) -> list[Reading]:
    """``rows`` readings of a live fleet, oldest first: every device reports each interval."""
    steps = -(-rows // len(device_ids))
    first = end - INGEST_INTERVAL * steps
    readings: list[Reading] = []
    for step in range(steps):
        for index, device_id in enumerate(device_ids):
            if len(readings) == rows:
                return readings
            # Devices are a few milliseconds apart, as real trackers are never in step.
            ts = first + INGEST_INTERVAL * step + timedelta(milliseconds=index)
            readings.append(Reading(device_id, ts, teltonika_data(index, step)))
    return readings


def data_json(data: dict[str, Any]) -> str:
    # The same compact form the ingest service writes.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def copy_line(tenant_id: int, device_id: int, ts: datetime, received_at: str, text: str) -> str:
    """One row in COPY's text format."""
    # Backslash, tab and line breaks are COPY's own syntax; JSON escapes reach it as text.
    escaped = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return f"{tenant_id}\t{device_id}\t{ts.isoformat()}\t{received_at}\t{escaped}\n"


# -- Database ---------------------------------------------------------------------------


def recreate_database(url: str) -> str:
    """Drop and create the benchmark database; return its name."""
    name = conninfo_to_dict(url).get("dbname")
    if not isinstance(name, str) or "bench" not in name:
        # The database is dropped without asking: never let a typo point at real data.
        raise SystemExit(
            f"The benchmark drops and recreates its database; {name!r} does not look like a "
            "benchmark database. Use a name containing 'bench', e.g. quantumfleet_bench."
        )
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def setup_django(database_url: str) -> None:
    """Configure Django for this process against the benchmark database, then migrate."""
    # The test environment: DEBUG off (DEBUG keeps every query in memory), fast hashing,
    # and the test client's host allowed. The HTTP rows use a production server instead.
    os.environ["DJANGO_ENV"] = "test"
    os.environ["DEBUG"] = "false"
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantumfleet.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    # As the WSGI entry point does in production: the objects loaded so far are frozen,
    # out of the garbage collector's full passes.
    from quantumfleet.runtime import freeze_startup_objects

    freeze_startup_objects()


def execute(statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on Django's connection; return its rows, if it has any."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        if cursor.description is None:
            return []
        return list(cursor.fetchall())


def scalar(statement: str, params: Sequence[Any] | None = None) -> Any:
    return execute(statement, params)[0][0]


def checkpoint() -> None:
    """Write dirty pages out now, so that a measurement does not pay for the previous one."""
    from django.db import DatabaseError

    try:
        execute("CHECKPOINT")
    except DatabaseError:
        # CHECKPOINT needs a superuser or pg_checkpoint; without it runs are only noisier.
        logger.warning("CHECKPOINT refused; measurements may include earlier writes")


def empty_telemetry() -> None:
    execute("TRUNCATE telemetry, device_state")


def ensure_partitions(start: datetime, end: datetime) -> None:
    """Create the time partitions covering [start, end], as the maintenance job would."""
    from apps.telemetry.partitions import ensure_partition_for

    # Day by day, so any configured span (day, week, month) gets every partition it needs.
    instant = start
    while instant < end:
        ensure_partition_for(instant)
        instant += timedelta(days=1)
    ensure_partition_for(end)


def server_facts() -> list[str]:
    version = scalar("SHOW server_version")
    settings = {
        name: scalar(f"SHOW {name}")
        for name in ("shared_buffers", "synchronous_commit", "max_wal_size")
    }
    listed = ", ".join(f"{name} {value}" for name, value in settings.items())
    return [f"PostgreSQL {version} ({listed})"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


# -- Fleets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    tenant_id: int
    device_ids: list[int]


def create_fleet(slug: str, devices: int, token_prefix: str | None) -> Fleet:
    """A tenant with ``devices`` devices, made through the devices service.

    With ``token_prefix`` device n (from 1) has the token ``prefix + "%04d" % n``, the
    scheme bench/wrk_ingest.lua uses; otherwise each device gets a generated token.
    """
    from apps.devices.services import create_device
    from apps.tenants.services import create_tenant

    tenant = create_tenant(name=f"Benchmark {slug}", slug=slug)
    # A benchmark measures capacity: its tenant's rate limits are lifted, as an operator
    # would for a tenant this large. The limiter still runs for every batch.
    tenant.device_points_per_minute = tenant.tenant_points_per_minute = 0
    tenant.save(update_fields=["device_points_per_minute", "tenant_points_per_minute"])
    device_ids = []
    for number in range(1, devices + 1):
        token = f"{token_prefix}{number:04d}" if token_prefix else None
        device, _ = create_device(tenant=tenant, token=token, name=f"{slug}-{number:04d}")
        device_ids.append(device.pk)
    return Fleet(tenant.pk, device_ids)


# -- 1 and 2: COPY ceiling and the ingest service -----------------------------------------


def copy_ceiling_rate(payload: bytes, rows: int, table: str = "bench_copy_ceiling") -> float:
    """Rows per second of one COPY of the payload into a scratch table, committed."""
    from django.db import connection, transaction

    execute(f"TRUNCATE {table}")
    checkpoint()
    view = memoryview(payload)

    started = time.perf_counter()
    statement = f"COPY {table} ({TELEMETRY_COLUMNS}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for offset in range(0, len(view), COPY_CHUNK_BYTES):
            copy.write(view[offset : offset + COPY_CHUNK_BYTES])
    elapsed = time.perf_counter() - started

    copied = scalar(f"SELECT count(*) FROM {table}")  # noqa: S608  (a table of this script)
    if copied != rows:
        raise BenchError(f"COPY stored {copied} rows of {rows}.")
    return rows / elapsed


def ingest_rate(points: Sequence[Point], batch: int) -> float:
    """Points per second through ``ingest_points``, ``batch`` per call, into empty tables."""
    from apps.telemetry.services import ingest_points

    empty_telemetry()
    checkpoint()

    started = time.perf_counter()
    stored = 0
    for offset in range(0, len(points), batch):
        stored += ingest_points(points[offset : offset + batch]).stored
    elapsed = time.perf_counter() - started

    if stored != len(points):
        raise BenchError(f"ingest_points stored {stored} points of {len(points)}.")
    return len(points) / elapsed


def create_scratch_tables() -> None:
    """Two COPY targets: an identical copy of telemetry, and a plain table.

    The copy has the same columns, primary key and partitions (the default one included)
    as telemetry, so COPY into it is the ceiling the service is judged against. The plain
    table has no partitions, for reference: what partitioning itself costs.
    """
    execute(
        "CREATE TABLE bench_copy_ceiling "
        "(LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES) "
        "PARTITION BY RANGE (ts)"
    )
    partitions = execute(
        "SELECT child.relname, pg_get_expr(child.relpartbound, child.oid) FROM pg_inherits "
        "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "WHERE pg_inherits.inhparent = 'telemetry'::regclass"
    )
    for name, bound in partitions:
        execute(f"CREATE TABLE bench_{name} PARTITION OF bench_copy_ceiling {bound}")
    execute(
        "CREATE TABLE bench_copy_plain "
        "(LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    )


def measure_ingest(report: Report, args: argparse.Namespace, fleet: Fleet) -> None:
    """Rows 1 and 2: COPY's rate, the service's rate, and the service's without FKs."""
    from apps.telemetry.services import Point

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    readings = ingest_readings(fleet.device_ids, args.rows, end)
    ensure_partitions(readings[0].ts, readings[-1].ts)

    # Built before any clock starts: generating data is not what is measured.
    received_at = datetime.now(UTC).isoformat()
    payload = "".join(
        copy_line(fleet.tenant_id, r.device_id, r.ts, received_at, data_json(r.data))
        for r in readings
    ).encode()
    points = [Point(fleet.tenant_id, r.device_id, r.ts, r.data) for r in readings]
    del readings

    create_scratch_tables()

    copy_rates: list[float] = []
    plain_rates: list[float] = []
    service_rates: list[float] = []
    # Alternated, so that a slow spell of the machine hits every side alike.
    for run in range(1, args.repeat + 1):
        copy_rates.append(copy_ceiling_rate(payload, args.rows))
        service_rates.append(ingest_rate(points, args.batch))
        plain_rates.append(copy_ceiling_rate(payload, args.rows, "bench_copy_plain"))
        logger.info(
            "run %d: COPY %.0f rows/s (plain table %.0f), ingest_points %.0f points/s",
            run,
            copy_rates[-1],
            plain_rates[-1],
            service_rates[-1],
        )

    copy_rate = statistics.median(copy_rates)
    plain_rate = statistics.median(plain_rates)
    service_rate = statistics.median(service_rates)
    ratio = service_rate / copy_rate
    report.add(
        Figure(
            f"1. COPY ceiling: {args.rows:,} rows, one COPY, table identical to telemetry",
            rate_text(copy_rate, "rows/s"),
            "1.00",
        )
    )
    report.add(
        Figure(
            "1b. for reference: the same COPY into a plain table (no partitions)",
            rate_text(plain_rate, "rows/s"),
            f"{plain_rate / copy_rate:.2f} of 1",
        )
    )
    report.add(
        Figure(
            f"2. ingest_points, {args.batch:,} points per call, commit per call",
            rate_text(service_rate, "points/s"),
            f"{ratio:.2f} of COPY",
            ">= 0.50 of COPY",
            ratio >= 0.5,
        )
    )
    execute("DROP TABLE bench_copy_ceiling, bench_copy_plain")


# -- 3: HTTP through gunicorn and wrk ----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_status(host: str, port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def log_tail(log: IO[bytes], lines: int = 20) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


@contextmanager
def gunicorn_server(database_url: str, workers: int, port: int) -> Iterator[int]:
    """A production-mode gunicorn on 127.0.0.1 for the block; yields its port.

    It is stopped when the block ends, whether by success, error or Ctrl-C.
    """
    environment = {
        **os.environ,
        "DJANGO_ENV": "production",
        # Fresh random secrets for this run only; they are never printed.
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CORS_ALLOWED_ORIGINS": "http://127.0.0.1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
    }
    # The project's own gunicorn.conf.py, as deployed; only the address and the worker
    # count are the benchmark's.
    environment |= {"API_HOST": "127.0.0.1", "API_PORT": str(port), "WEB_WORKERS": str(workers)}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--config",
        "gunicorn.conf.py",
        "--log-level",
        "warning",
        "quantumfleet.wsgi:application",
    ]
    with tempfile.TemporaryFile() as log:
        # The command is built from this script's own values, not from outside input.
        process = subprocess.Popen(  # noqa: S603
            command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
            while http_status("127.0.0.1", port, "/health/live") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"gunicorn did not start:\n{log_tail(log)}")
                time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests_per_second: float
    requests: int
    non_2xx_3xx: int
    socket_errors: str
    latency_p50_ms: float
    latency_p99_ms: float
    statuses: dict[str, int]


LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's own summary, and the status line bench/wrk_ingest.lua adds to it."""

    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match:
            return match.group(1)
        if default is None:
            raise BenchError(f"wrk printed no {pattern!r}:\n{output}")
        return default

    def latency(percent: int) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk printed no {percent}% latency:\n{output}")
        return float(match.group(1)) * LATENCY_UNITS_MS[match.group(2)]

    status_line = number(r"^qf-bench-status (.*)$", default="")
    statuses = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", status_line)}
    return WrkResult(
        requests_per_second=float(number(r"^Requests/sec:\s+([\d.]+)")),
        requests=int(number(r"^\s+(\d+) requests in ")),
        non_2xx_3xx=int(number(r"^\s+Non-2xx or 3xx responses: (\d+)", default="0")),
        socket_errors=number(r"^\s+Socket errors: (.*)$", default="none"),
        latency_p50_ms=latency(50),
        latency_p99_ms=latency(99),
        statuses=statuses,
    )


def run_wrk(
    wrk: str,
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    script_args: Sequence[str] | None = None,
) -> WrkResult:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script_args is not None:
        command += ["-s", str(WRK_SCRIPT)]
    command.append(url)
    if script_args is not None:
        command += ["--", *script_args]
    # The command is built from this script's own values, not from outside input.
    finished = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    if finished.returncode != 0:
        raise BenchError(f"wrk failed ({finished.returncode}):\n{finished.stderr}")
    return parse_wrk(finished.stdout)


def telemetry_rows(tenant_id: int) -> int:
    count: int = scalar("SELECT count(*) FROM telemetry WHERE tenant_id = %s", [tenant_id])
    return count


def measure_http(report: Report, args: argparse.Namespace, fleet: Fleet) -> None:
    """Row 3: /ingest/http and /health/live under the same concurrent load.

    The two endpoints are measured in alternating rounds and the medians reported: the
    speed of a shared machine drifts by tens of percent within a minute, and a single pair
    of runs would report the drift as much as the server.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        logger.warning("wrk is not installed: install it with `apt-get install wrk`")
        report.add(Figure("3. HTTP rows", "skipped: wrk not found (apt-get install wrk)"))
        return

    empty_telemetry()
    now = datetime.now(UTC).replace(microsecond=0)
    # One disjoint time range per ingest run (the warm-up first), so no request repeats
    # another's point.
    run_count = args.http_rounds + 1
    bases = [now - timedelta(hours=run_count - index) for index in range(run_count)]
    ensure_partitions(bases[0], now)
    port = args.port or free_port()
    load = {"connections": args.connections, "threads": args.wrk_threads}

    def ingest_args(base: datetime) -> list[str]:
        return [str(len(fleet.device_ids)), str(int(base.timestamp())), INGEST_TOKEN_PREFIX]

    lives: list[WrkResult] = []
    ingests: list[WrkResult] = []
    stored = 0
    with gunicorn_server(args.database_url, args.workers, port) as port:
        base_url = f"http://127.0.0.1:{port}"
        # Warm-ups load every worker's code, connections and caches; they are not counted.
        run_wrk(wrk, f"{base_url}/health/live", seconds=HTTP_WARMUP_SECONDS, **load)
        run_wrk(
            wrk, base_url, seconds=HTTP_WARMUP_SECONDS, script_args=ingest_args(bases[0]), **load
        )
        for round_number in range(1, run_count):
            logger.info("HTTP round %d of %d", round_number, args.http_rounds)
            lives.append(run_wrk(wrk, f"{base_url}/health/live", seconds=args.http_seconds, **load))
            time.sleep(HTTP_SETTLE_SECONDS)
            before = telemetry_rows(fleet.tenant_id)
            ingests.append(
                run_wrk(
                    wrk,
                    base_url,
                    seconds=args.http_seconds,
                    script_args=ingest_args(bases[round_number]),
                    **load,
                )
            )
            time.sleep(HTTP_SETTLE_SECONDS)
            stored += telemetry_rows(fleet.tenant_id) - before

    shape = (
        f"{args.workers} gthread workers (gunicorn.conf.py), "
        f"wrk -t{args.wrk_threads} -c{args.connections}"
    )
    live_rate = statistics.median(run.requests_per_second for run in lives)
    ingest_rate = statistics.median(run.requests_per_second for run in ingests)
    # Each round's ratio pairs two runs a few seconds apart; their median is the figure
    # least moved by the machine's drift.
    ratios = [
        ingest.requests_per_second / live.requests_per_second
        for live, ingest in zip(lives, ingests, strict=True)
    ]
    ratio = statistics.median(ratios)
    report.add(
        Figure(
            f"3a. HTTP GET /health/live (no database), {shape}",
            rate_text(live_rate, "req/s"),
            "1.00",
        )
    )
    report.add(
        Figure(
            "3b. HTTP POST /ingest/http, one point per request",
            rate_text(ingest_rate, "req/s"),
            f"{ratio:.2f} of 3a",
            ">= 0.50 of 3a",
            ratio >= 0.5,
        )
    )
    acknowledged = sum(run.statuses.get("status_2xx", 0) for run in ingests)
    created = sum(run.statuses.get("status_201", 0) for run in ingests)
    non_2xx = sum(run.statuses.get("status_other", 0) for run in ingests)
    # wrk stops with one request in flight on each connection; the server still commits
    # those, so up to --connections rows more than 2xx answers per run is expected. Fewer
    # rows than 2xx answers would be acknowledged points lost.
    in_flight = stored - acknowledged
    most_in_flight = args.connections * len(ingests)
    report.add(
        Figure(
            "3c. HTTP ingest: rows stored vs 2xx answers",
            f"{stored:,} rows, {acknowledged:,} 2xx",
            f"{non_2xx} non-2xx",
            "no loss, 0 non-2xx",
            0 <= in_flight <= most_in_flight and non_2xx == 0,
        )
    )
    report.notes.append(
        f"3: {args.http_rounds} rounds of {args.http_seconds} s per endpoint, alternating; "
        "medians reported; per-round ratios "
        + ", ".join(f"{value:.2f}" for value in ratios)
        + "; live req/s "
        + ", ".join(f"{run.requests_per_second:,.0f}" for run in lives)
        + "; ingest req/s "
        + ", ".join(f"{run.requests_per_second:,.0f}" for run in ingests)
        + "."
    )
    report.notes.append(
        f"3c: {in_flight} rows were committed for requests still in flight when wrk stopped "
        f"(at most one per connection and run, {most_in_flight}); "
        f"{acknowledged - created} of the 2xx were 200 (nothing stored); socket errors: "
        f"live {', '.join(run.socket_errors for run in lives)}, "
        f"ingest {', '.join(run.socket_errors for run in ingests)}; latency p50/p99 of the "
        f"median-rate runs: live {median_run(lives).latency_p50_ms:.1f}/"
        f"{median_run(lives).latency_p99_ms:.1f} ms, ingest "
        f"{median_run(ingests).latency_p50_ms:.1f}/{median_run(ingests).latency_p99_ms:.1f} ms."
    )


def median_run(runs: Sequence[WrkResult]) -> WrkResult:
    """The run with the median rate (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda run: run.requests_per_second)
    return ordered[(len(ordered) - 1) // 2]


# -- 4: query latency at 1M and 10M rows --------------------------------------------------


@dataclass(frozen=True)
class QueryKind:
    """One kind of query of row 4, with its p95 target at 10M rows."""

    key: str
    label: str
    target_p95_seconds: float
    path: Callable[[int, datetime], str]
    # The smallest number of items a correct answer holds, a check that the query worked.
    expected_items: int


def raw_7_days(device_id: int, now: datetime) -> str:
    params = {
        "device_id": device_id,
        "from": (now - timedelta(days=7)).isoformat(),
        "to": now.isoformat(),
        "limit": 10_000,
    }
    return f"/telemetry/query?{urlencode(params)}"


def hourly_30_days(device_id: int, now: datetime) -> str:
    params = {
        "device_id": device_id,
        "from": (now - timedelta(days=30)).isoformat(),
        "to": now.isoformat(),
        "interval": "1h",
        "agg": "avg",
        "keys": "gps.speed",
        "limit": 1000,
    }
    return f"/telemetry/query?{urlencode(params)}"


POINTS_PER_DAY = QUERY_POINTS_PER_WINDOW / QUERY_WINDOW.days
QUERY_KINDS = (
    QueryKind(
        "a",
        "newest 100 points of one device",
        0.020,
        lambda device_id, now: f"/telemetry/query?device_id={device_id}&limit=100",
        100,
    ),
    QueryKind("b", "one device, last 7 days raw", 0.100, raw_7_days, int(POINTS_PER_DAY * 7) - 1),
    QueryKind("c", "one device, 30 days hourly avg gps.speed", 0.100, hourly_30_days, 30 * 24 - 2),
    QueryKind(
        "d",
        f"latest state of all {QUERY_DEVICES:,} devices",
        0.020,
        lambda device_id, now: f"/telemetry/latest?limit={QUERY_DEVICES}",
        QUERY_DEVICES,
    ),
)


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float


def history_ts(device_index: int, step: int, end: datetime) -> datetime:
    # Step 0 is the newest point; devices are two seconds apart within a step.
    return end - QUERY_INTERVAL * step - timedelta(seconds=2 * device_index)


def load_history(fleet: Fleet, end: datetime, steps: range) -> float:
    """COPY the fleet's points for ``steps`` straight into telemetry, oldest first.

    Bypasses the ingest service, which the rows above measure. Returns rows per second.
    """
    from django.db import connection, transaction

    ensure_partitions(history_ts(len(fleet.device_ids), steps[-1], end), end)
    received_at = end.isoformat()
    # Higher steps are older: the history arrives in time order, as devices send it.
    oldest_first = sorted(steps, reverse=True)
    total = len(steps) * len(fleet.device_ids)
    rows = 0
    started = time.perf_counter()
    for offset in range(0, len(oldest_first), HISTORY_STEPS_PER_COMMIT):
        chunk = oldest_first[offset : offset + HISTORY_STEPS_PER_COMMIT]
        # One transaction per chunk keeps each commit, and its WAL, a manageable size.
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY telemetry ({TELEMETRY_COLUMNS}) FROM STDIN") as copy,
        ):
            for step in chunk:
                lines = [
                    copy_line(
                        fleet.tenant_id,
                        device_id,
                        history_ts(index, step, end),
                        received_at,
                        data_json(teltonika_data(index, step)),
                    )
                    for index, device_id in enumerate(fleet.device_ids)
                ]
                copy.write("".join(lines))
        loaded = rows + len(chunk) * len(fleet.device_ids)
        if loaded // 1_000_000 > rows // 1_000_000:
            logger.info("loaded %s of %s rows", f"{loaded:,}", f"{total:,}")
        rows = loaded
    return rows / (time.perf_counter() - started)


def write_device_states(fleet: Fleet, end: datetime, points_per_device: int) -> None:
    """The latest state each device would have after its history went through ingest."""
    from apps.telemetry.services import position_of

    execute("DELETE FROM device_state WHERE tenant_id = %s", [fleet.tenant_id])
    rows = []
    for index, device_id in enumerate(fleet.device_ids):
        data = teltonika_data(index, 0)
        newest = history_ts(index, 0, end)
        latitude, longitude = position_of(data)
        rows.append(
            (
                device_id,
                fleet.tenant_id,
                newest,
                end,
                data_json(data),
                newest,
                latitude,
                longitude,
                points_per_device,
                end,
            )
        )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO device_state (device_id, tenant_id, last_ts, last_received_at, "
            "last_data, position_ts, latitude, longitude, point_count, updated_at) "
            "VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)",
            rows,
        )


def viewer_token(fleet: Fleet) -> str:
    """A fresh JWT of a viewer of the fleet's tenant (tokens expire; runs can be long)."""
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.models import User
    from apps.tenants.models import Role, Tenant
    from apps.tenants.services import grant_role

    email = f"viewer@{QUERY_TENANT_SLUG}.example.com"
    user = User.objects.filter(email=email).first() or User.objects.create_user(email)
    grant_role(tenant=Tenant.objects.get(pk=fleet.tenant_id), user=user, role=Role.VIEWER)
    return str(AccessToken.for_user(user))


def answer_items(body: Any) -> int:
    return len(body) if isinstance(body, list) else 0


def sample_latency(
    kind: QueryKind, fleet: Fleet, now: datetime, samples: int, seed: int
) -> Latency:
    """Time ``samples`` requests of one kind through the whole Django stack, in-process."""
    import random

    from django.test import Client

    client = Client()
    authorization = f"Bearer {viewer_token(fleet)}"
    # Reproducible sampling, not secrecy: the same seed asks for the same devices.
    chooser = random.Random(seed)  # noqa: S311
    timings: list[float] = []
    for number in range(QUERY_WARMUP_REQUESTS + samples):
        path = kind.path(chooser.choice(fleet.device_ids), now)
        started = time.perf_counter()
        response = client.get(path, HTTP_AUTHORIZATION=authorization)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"{path} answered {response.status_code}: {response.content!r}")
        items = answer_items(response.json())
        if items < kind.expected_items:
            raise BenchError(f"{path} answered {items} items, expected {kind.expected_items}+")
        if number >= QUERY_WARMUP_REQUESTS:
            timings.append(elapsed)
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return Latency(p50=cuts[49], p95=cuts[94])


def settle_after_load() -> None:
    """Statistics for every table and the load's dirty pages written out.

    Every table, not only telemetry: the planner needs the fleet's devices and states
    counted too. The checkpoint keeps the flushing of the load from stalling the samples.
    """
    execute("VACUUM (ANALYZE)")
    checkpoint()


def warm_window(fleet: Fleet, end: datetime) -> None:
    """Read the newest month of telemetry once, its heap and its primary key.

    On a live system the newest month is the hot part of the table. On a machine whose
    page cache is smaller than the table, or reclaimed, a cold cache would measure the
    disk instead of the queries. Older partitions are left as they are.
    """
    start = end - QUERY_WINDOW - timedelta(days=1)
    # "data IS NOT NULL" makes PostgreSQL visit every heap page of the window; the tenant
    # condition walks the primary key over the same range.
    execute(
        "SELECT count(*) FROM telemetry WHERE ts >= %s AND ts <= %s AND data IS NOT NULL",
        [start, end],
    )
    execute(
        "SELECT count(*) FROM telemetry WHERE tenant_id = %s AND ts >= %s AND ts <= %s",
        [fleet.tenant_id, start, end],
    )


def cpu_check() -> float:
    """Seconds this process takes for a fixed amount of Python work.

    Printed next to each table size: on a shared machine the CPU can be slower during one
    step than during another, and a latency ratio is only meaningful if it was not.
    """
    data = teltonika_data(1, 1)
    started = time.perf_counter()
    for _ in range(20_000):
        data_json(data)
    return time.perf_counter() - started


def measure_size(fleet: Fleet, end: datetime, samples: int, seed: int) -> dict[str, Latency]:
    settle_after_load()
    latencies = {}
    for kind in QUERY_KINDS:
        warm_window(fleet, end)
        # Each kind starts from the same collector state; collections during the samples
        # still count, as they do in a server process.
        gc.collect()
        # Every query ends at the instant the data ends, so each reads a full window.
        latencies[kind.key] = sample_latency(kind, fleet, end, samples, seed)
    return latencies


def measure_queries(report: Report, args: argparse.Namespace) -> None:
    """Row 4: latency of the four queries at 1M rows and, unless skipped, at 10M."""
    fleet = create_fleet(QUERY_TENANT_SLUG, QUERY_DEVICES, token_prefix=None)
    empty_telemetry()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    load_rate = load_history(fleet, end, range(SMALL_STEPS))
    write_device_states(fleet, end, SMALL_STEPS)
    rows = scalar("SELECT count(*) FROM telemetry")
    report.notes.append(
        f"4: history loaded with COPY into partitioned telemetry at {load_rate:,.0f} rows/s "
        f"(1M step); {len(fleet.device_ids):,} devices, one point per device every "
        f"{QUERY_INTERVAL.total_seconds():.0f} s; VACUUM (ANALYZE) and CHECKPOINT after "
        "each load, the newest month read once before each query kind; "
        f"{args.samples} samples per query after {QUERY_WARMUP_REQUESTS} warm-up requests."
    )
    checks = [cpu_check()]
    small = measure_size(fleet, end, args.samples, args.seed)
    # Each size: its label, its latencies and the 1M latencies it is compared with.
    sizes: list[tuple[str, dict[str, Latency], dict[str, Latency] | None]] = [
        (f"{rows / 1e6:.0f}M", small, None)
    ]

    if not args.skip_10m:
        # Older history is added below the first 30 days: the newest window is unchanged.
        load_rate = load_history(fleet, end, range(SMALL_STEPS, LARGE_STEPS))
        write_device_states(fleet, end, LARGE_STEPS)
        large_rows = scalar("SELECT count(*) FROM telemetry")
        report.notes.append(f"4: 10M step loaded at {load_rate:,.0f} rows/s.")
        checks.append(cpu_check())
        large = measure_size(fleet, end, args.samples, args.seed)
        sizes.append((f"{large_rows / 1e6:.0f}M", large, small))

    report.notes.append(
        "4: CPU check (20,000 json.dumps) before each size: "
        + ", ".join(
            f"{size} {ms_text(check)}" for (size, _, _), check in zip(sizes, checks, strict=True)
        )
        + "; unequal checks mean the machine's speed changed between the sizes."
    )
    for kind in QUERY_KINDS:
        for size, latencies, baseline in sizes:
            latency = latencies[kind.key]
            result = f"p50 {ms_text(latency.p50)}, p95 {ms_text(latency.p95)}"
            if baseline is None:
                report.add(Figure(f"4{kind.key}. {kind.label} @ {size}", result))
                continue
            growth = latency.p95 / baseline[kind.key].p95
            target_ms = kind.target_p95_seconds * 1000
            report.add(
                Figure(
                    f"4{kind.key}. {kind.label} @ {size}",
                    result,
                    f"p95 {growth:.2f}x of 1M",
                    f"p95 < {target_ms:.0f} ms, <= 1.5x",
                    latency.p95 < kind.target_p95_seconds and growth <= 1.5,
                )
            )


# -- Running ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL of the benchmark database, which is dropped and recreated "
        "(env BENCH_DATABASE_URL)",
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows for rows 1 and 2")
    parser.add_argument("--batch", type=int, default=1000, help="points per ingest_points call")
    parser.add_argument(
        "--devices", type=int, default=100, help="devices of the ingest and HTTP rows"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of rows 1 and 2 (median)")
    parser.add_argument(
        "--http-rounds", type=int, default=5, help="alternating runs of rows 3a and 3b (median)"
    )
    # cores + 1: on 2 cores, 5 or 8 workers served both endpoints slower than 3 (they only
    # contend with PostgreSQL and wrk for the CPU); docs/benchmarks.md has the sweep.
    parser.add_argument(
        "--workers",
        type=int,
        default=cores + 1,
        help="gunicorn workers (threads from gunicorn.conf.py)",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=cores, help="wrk threads")
    parser.add_argument("--http-seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--port", type=int, default=0, help="gunicorn port; 0 picks a free one")
    parser.add_argument("--samples", type=int, default=200, help="requests per query kind")
    parser.add_argument("--seed", type=int, default=1, help="seed of the device sampling")
    parser.add_argument("--skip-http", action="store_true", help="skip row 3")
    parser.add_argument("--skip-queries", action="store_true", help="skip row 4")
    parser.add_argument(
        "--skip-10m", action="store_true", help="measure queries at 1M rows only (saves minutes)"
    )
    parser.add_argument(
        "--drop-database", action="store_true", help="drop the benchmark database at the end"
    )
    args = parser.parse_args(argv)
    if (
        args.rows < args.devices
        or args.batch < 1
        or args.repeat < 1
        or args.samples < 2
        or args.http_rounds < 1
    ):
        parser.error(
            "--rows must be at least --devices; --batch, --repeat, --http-rounds >= 1; "
            "--samples >= 2"
        )
    return args


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s bench %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # Django's logging configuration must not silence or duplicate the progress lines.
    logger.propagate = False


def close_django_connections() -> None:
    from django.conf import settings
    from django.db import connections

    if settings.configured:
        connections.close_all()


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turned into an exception so that the server is stopped on the way out.
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, report: Report) -> None:
    setup_django(args.database_url)
    report.header += [
        f"machine: {os.cpu_count()} cores, {cpu_model()}",
        *server_facts(),
    ]
    ingest_fleet = create_fleet(INGEST_TENANT_SLUG, args.devices, INGEST_TOKEN_PREFIX)
    step_started = time.monotonic()
    measure_ingest(report, args, ingest_fleet)
    logger.info("rows 1-2 took %.0f s", time.monotonic() - step_started)

    if not args.skip_http:
        step_started = time.monotonic()
        measure_http(report, args, ingest_fleet)
        logger.info("row 3 took %.0f s", time.monotonic() - step_started)

    if not args.skip_queries:
        step_started = time.monotonic()
        measure_queries(report, args)
        logger.info("row 4 took %.0f s", time.monotonic() - step_started)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    started = time.monotonic()
    name = recreate_database(args.database_url)
    report = Report(
        header=[
            f"Quantum Fleet telemetry benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"database: {name}; {args.rows:,} rows over {args.devices} devices; "
            f"median of {args.repeat} runs for rows 1-2",
        ]
    )
    try:
        run(args, report)
    finally:
        if args.drop_database:
            close_django_connections()
            drop_database(args.database_url, name)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    report.notes.append(f"total time: {minutes} min {seconds} s")
    sys.stdout.write(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
