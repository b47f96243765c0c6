"""Fault runs from the command line: loss and duplication of each transport under faults.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL,
Redis and Mosquitto installed (their binaries: nothing needs to be running)::

    .venv/bin/python bench/faults.py                               # every run, ~1 minute
    .venv/bin/python bench/faults.py --transport mqtt --fault broker
    .venv/bin/python bench/faults.py --devices 200 --points 500 --downtime 5

It never touches the services already running on the machine: it starts its own
PostgreSQL, Redis and Mosquitto on free ports in a temporary directory, runs the
project's real processes against them (gunicorn with gunicorn.conf.py, ``manage.py
runmqtt``, ``manage.py runteltonika``), and removes everything at the end. The runs are
those of tests/faults (docs/faults.md explains them); it prints one line per run and
exits 1 if any acknowledged point was lost or stored twice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.runs import FAULTS, Plan, cast_runs, migrate, run_fault
from tests.faults.services import PrivateServices


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transport",
        action="append",
        choices=sorted(FAULTS),
        help="Transport to run (repeatable; default all).",
    )
    parser.add_argument(
        "--fault",
        action="append",
        choices=sorted({fault for faults in FAULTS.values() for fault in faults}),
        help="Fault to inject (repeatable; default every fault of each transport).",
    )
    parser.add_argument("--devices", type=int, default=Plan.devices, help="Devices per run.")
    parser.add_argument(
        "--points", type=int, default=Plan.points_per_device, help="Points per device."
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=Plan.load_seconds,
        help="How long the load lasts without a fault (0: as fast as it goes).",
    )
    parser.add_argument(
        "--downtime",
        type=float,
        default=Plan.downtime,
        help="Seconds the failed process or service stays down.",
    )
    parser.add_argument(
        "--fault-after",
        type=float,
        default=Plan.fault_after,
        help="Share of the points acknowledged before the fault (0-1).",
    )
    parser.add_argument(
        "--send-timeout",
        type=float,
        default=Plan.send_timeout,
        help="Seconds the devices keep trying before they give up.",
    )
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    plan = Plan(
        devices=arguments.devices,
        points_per_device=arguments.points,
        fault_after=arguments.fault_after,
        load_seconds=arguments.load_seconds,
        downtime=arguments.downtime,
        send_timeout=arguments.send_timeout,
    )
    runs = [
        (transport, fault)
        for transport in arguments.transport or FAULTS
        for fault in FAULTS[transport]
        if not arguments.fault or fault in arguments.fault
    ]
    if not runs:
        sys.stderr.write("No such run: see --help for the faults of each transport.\n")
        return 2
    services = PrivateServices()
    failed = 0
    try:
        services.start(mosquitto=any(transport == "mqtt" for transport, _ in runs))
        migrate(services)
        casts = cast_runs(services, [transport for transport, _ in runs], plan.devices)
        for (transport, fault), cast in zip(runs, casts, strict=True):
            report = run_fault(services, transport, fault, plan, cast=cast)
            sys.stdout.write(report.line() + "\n")
            sys.stdout.flush()
            if not report.perfect:
                failed += 1
                sys.stdout.write(f"  failures seen by devices: {report.failures}\n")
                sys.stdout.write("  " + report.log_tail.replace("\n", "\n  ") + "\n")
    finally:
        services.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
