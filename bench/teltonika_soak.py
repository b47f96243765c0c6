"""Teltonika soak: thousands of trackers on a steady period for minutes; memory, files, rate.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL::

    .venv/bin/python bench/teltonika_soak.py                          # 10 minutes
    .venv/bin/python bench/teltonika_soak.py --minutes 2 --trackers 2000

It recreates its own database (as bench/teltonika_bench.py does), starts ``manage.py
runteltonika`` and runs ``manage.py simteltonika`` with ``--trackers`` connections, made
over the first ``--ramp`` seconds, each sending a packet every ``--interval`` seconds from
its own starting moment, as a fleet on a reporting period does: 10,000 trackers every 10 s
make a steady 1,000 packets/s. Every ``--sample`` seconds it reads the daemon's resident
memory and file descriptors (from /proc) and the rows stored since the last sample. It
prints the samples and a summary over the run's second half (the first connects the
trackers and brings the daemon to its working size): memory and descriptors from its
start to its end, the ingest rate's spread, and whether every acknowledged record was
stored. Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import telemetry_bench as common
import teltonika_bench as teltonika
from telemetry_bench import BenchError, scalar

logger = logging.getLogger("bench.teltonika_soak")

# Growth from the end of the first minute to the end that still counts as flat.
MEMORY_GROWTH_ALLOWED = 0.10
DESCRIPTORS_GROWTH_ALLOWED = 10
# The slowest sample's rate against the median: a steady stream stays close to it.
RATE_SPREAD_ALLOWED = 0.8


@dataclass
class Sample:
    seconds: float
    resident_kib: int
    descriptors: int
    rows: int
    rate: float


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def soak(args: argparse.Namespace, database_url: str) -> tuple[list[Sample], str]:
    port = common.free_port()
    with (
        teltonika.running_daemon(database_url, port) as daemon,
        tempfile.TemporaryFile() as errors,
    ):
        simulator = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "simteltonika",
            "--port",
            str(port),
            "--imei",
            str(teltonika.FIRST_IMEI),
            "--devices",
            str(args.trackers),
            "--records-per-packet",
            str(args.records_per_packet),
            "--interval",
            str(args.interval),
            "--ramp",
            str(args.ramp),
            "--duration",
            str(args.minutes * 60),
            cwd=common.REPO_ROOT,
            env={**os.environ, "DJANGO_ENV": "test", "DATABASE_URL": database_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        samples = await sample_until_done(daemon.pid, simulator, args.sample)
        output, _ = await simulator.communicate()
        errors.seek(0)
        reasons = Counter(
            line.split(": ", 1)[-1].strip() for line in errors.read().decode().splitlines()
        )
    if simulator.returncode != 0:
        raise BenchError(
            f"simteltonika failed: {output.decode()[-2000:]}\ntrackers' errors: "
            + ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(5))
        )
    return samples, output.decode().strip()


async def sample_until_done(
    pid: int, simulator: asyncio.subprocess.Process, every: float
) -> list[Sample]:
    started = time.monotonic()
    samples: list[Sample] = []
    last_rows = await asyncio.to_thread(scalar, "SELECT count(*) FROM telemetry")
    last_time = started
    while simulator.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(simulator.wait(), every)
        now = time.monotonic()
        rows = await asyncio.to_thread(scalar, "SELECT count(*) FROM telemetry")
        sample = Sample(
            seconds=now - started,
            resident_kib=teltonika.resident_kib(pid),
            descriptors=open_descriptors(pid),
            rows=rows,
            rate=(rows - last_rows) / (now - last_time),
        )
        samples.append(sample)
        logger.info(
            "%6.0f s  %7.1f MiB  %6d fds  %10s rows  %8.0f rows/s",
            sample.seconds,
            sample.resident_kib / 1024,
            sample.descriptors,
            f"{rows:,}",
            sample.rate,
        )
        last_rows, last_time = rows, now
    return samples


def sample_table(samples: list[Sample]) -> list[str]:
    lines = ["| s | RSS MiB | fds | rows | rows/s |", "|---|---|---|---|---|"]
    lines.extend(
        f"| {s.seconds:.0f} | {s.resident_kib / 1024:.1f} | {s.descriptors} | {s.rows:,} "
        f"| {s.rate:,.0f} |"
        for s in samples
    )
    return lines


def summarise(
    samples: list[Sample], simulator_summary: str, expected_rate: float, seconds: float
) -> list[str]:
    """The summary lines; raises BenchError listing every check that failed."""
    # Judged over the second half, before the trackers hang up: the first half connects
    # them and fills the daemon's pools and buffers to their working size.
    full = [sample for sample in samples if seconds / 2 <= sample.seconds < seconds]
    full = full or samples
    first, last = full[0], full[-1]
    rates = [sample.rate for sample in full]
    median = statistics.median(rates)
    growth = (last.resident_kib - first.resident_kib) / first.resident_kib
    acknowledged = teltonika.acknowledged_records(simulator_summary)
    stored = samples[-1].rows
    lines = [
        f"memory (RSS) at {first.seconds:.0f} s -> at {last.seconds:.0f} s: "
        f"{first.resident_kib / 1024:.1f} -> "
        f"{last.resident_kib / 1024:.1f} MiB ({growth:+.1%}; max "
        f"{max(s.resident_kib for s in samples) / 1024:.1f} MiB)",
        f"open file descriptors: {first.descriptors} -> {last.descriptors}",
        f"rows/s per sample: min {min(rates):,.0f}, median {median:,.0f}, max {max(rates):,.0f} "
        f"(the load sends {expected_rate:,.0f}/s)",
        f"records acknowledged {acknowledged:,}, stored {stored:,}",
    ]
    failures = []
    if growth > MEMORY_GROWTH_ALLOWED:
        failures.append(f"memory grew {growth:.1%}")
    if last.descriptors - first.descriptors > DESCRIPTORS_GROWTH_ALLOWED:
        failures.append("file descriptors grew")
    if min(rates) < RATE_SPREAD_ALLOWED * median:
        failures.append("the ingest rate dipped below 80 % of its median")
    if stored < acknowledged:
        failures.append(f"{acknowledged - stored} acknowledged records not stored")
    if failures:
        raise BenchError("; ".join(failures) + "\n" + "\n".join(lines))
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", teltonika.DEFAULT_DATABASE_URL),
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--trackers", type=int, default=10_000, help="Connections, all sending.")
    parser.add_argument("--records-per-packet", type=int, default=1)
    parser.add_argument(
        "--interval", type=float, default=10.0, help="Seconds between one tracker's packets."
    )
    parser.add_argument(
        "--ramp", type=float, default=60.0, help="Seconds over which the trackers connect."
    )
    parser.add_argument("--sample", type=float, default=30.0, help="Seconds between samples.")
    parser.add_argument("--keep-database", dest="drop_database", action="store_false")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.trackers + 200
    if hard < needed:
        sys.stderr.write(f"The open-file limit ({hard}) is below the {needed} needed.\n")
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    name = common.recreate_database(args.database_url)
    try:
        common.setup_django(args.database_url)
        teltonika.register_trackers(args.trackers)
        samples, summary = asyncio.run(soak(args, args.database_url))
        expected = args.trackers * args.records_per_packet / args.interval
        sys.stdout.write(
            f"Quantum Fleet Teltonika soak, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
            f"{args.trackers:,} trackers each sending {args.records_per_packet} record(s) "
            f"every {args.interval:g} s, {args.minutes:g} minutes\n"
        )
        sys.stdout.write("\n".join(sample_table(samples)) + "\n")
        sys.stdout.write(f"simulator: {summary}\n")
        try:
            lines = summarise(samples, summary, expected, args.minutes * 60)
        except BenchError as error:
            sys.stdout.write(f"FAILED: {error}\n")
            return 1
        sys.stdout.write("\n".join(lines) + "\n")
    finally:
        if args.drop_database:
            common.close_django_connections()
            common.drop_database(args.database_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
