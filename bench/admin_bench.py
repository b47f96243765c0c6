"""Admin benchmark: the operators' pages with 10,000 devices and a million telemetry rows.

Run it from the root of a checkout after ``make install``, on a machine with PostgreSQL::

    .venv/bin/python bench/admin_bench.py                  # about 3 minutes
    .venv/bin/python bench/admin_bench.py --devices 2000 --points-per-device 100

It recreates its own database (``--database-url``, else ``BENCH_DATABASE_URL``, else
``postgres://postgres@127.0.0.1:5432/quantumfleet_bench_admin``), makes one tenant with
``--devices`` devices through the devices service, loads ``--points-per-device`` points
of each straight into telemetry with COPY (with the devices' latest states), and then
requests each admin page through the whole Django stack in-process, as a superuser and as
a staff admin of the tenant: warm-up requests, then ``--samples`` timed ones. It prints
one table: p50 and p95 per page, and the SQL statements each request ran, which must not
grow with the number of rows. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import telemetry_bench as common
from telemetry_bench import Figure, Report

logger = logging.getLogger("bench.admin")

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/quantumfleet_bench_admin"
TENANT_SLUG = "bench-admin"
WARM_UP = 3
# What an operator waits for a page before it feels slow.
P95_TARGET_SECONDS = 0.5


@dataclass(frozen=True)
class Page:
    name: str
    url: str


def pages(device_id: int, end: datetime) -> list[Page]:
    day_before = (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    return [
        Page("fleet overview", "/admin/fleet/"),
        Page("fleet overview, page 100", "/admin/fleet/?page=100"),
        Page("devices list", "/admin/devices/device/"),
        Page("devices list, search", "/admin/devices/device/?q=bench-admin-0999"),
        Page("devices list, page 100", "/admin/devices/device/?p=99"),
        Page("latest states list", "/admin/telemetry/devicestate/"),
        Page("audit events list", "/admin/audit/auditevent/"),
        Page("device sessions list", "/admin/devices/devicesession/"),
        Page("device commands list", "/admin/devices/devicecommand/"),
        Page("tenants list", "/admin/tenants/tenant/"),
        Page("device page (chart, track)", f"/admin/devices/device/{device_id}/overview/"),
        Page("device telemetry, newest page", f"/admin/devices/device/{device_id}/telemetry/"),
        Page(
            "device telemetry, one day",
            f"/admin/devices/device/{device_id}/telemetry/?from={day_before}",
        ),
        Page("device telemetry CSV", f"/admin/devices/device/{device_id}/telemetry.csv"),
    ]


def build_fleet(args: argparse.Namespace) -> tuple[common.Fleet, datetime]:
    started = time.perf_counter()
    fleet = common.create_fleet(TENANT_SLUG, args.devices, token_prefix=None)
    logger.info("%s devices in %.0f s", f"{args.devices:,}", time.perf_counter() - started)
    end = datetime.now(UTC) - timedelta(minutes=1)
    rate = common.load_history(fleet, end, range(args.points_per_device))
    common.write_device_states(fleet, end, args.points_per_device)
    logger.info("telemetry loaded at %s rows/s", f"{rate:,.0f}")
    common.settle_after_load()
    return fleet, end


def staff_admin(tenant_id: int) -> Any:
    from apps.accounts.models import User
    from apps.tenants.models import Role, Tenant
    from apps.tenants.services import grant_role

    user = User.objects.create_user(f"admin@{TENANT_SLUG}.example.com", is_staff=True)
    grant_role(tenant=Tenant.objects.get(pk=tenant_id), user=user, role=Role.ADMIN)
    return user


def measure(client: Any, page: Page, samples: int) -> tuple[list[float], int, int]:
    """Seconds per request, SQL statements of the last one, and its status."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARM_UP):
        client.get(page.url)
    timings = []
    status = 0
    statements = 0
    for _ in range(samples):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(page.url)
            if getattr(response, "streaming", False):
                b"".join(response.streaming_content)
            timings.append(time.perf_counter() - started)
        status, statements = response.status_code, len(captured.captured_queries)
    return timings, statements, status


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(report: Report, args: argparse.Namespace) -> None:
    from django.test import Client

    from apps.accounts.models import User

    fleet, end = build_fleet(args)
    rows = common.scalar("SELECT count(*) FROM telemetry")
    report.header.append(f"data: {args.devices:,} devices, {rows:,} telemetry rows")
    superuser = User.objects.create_superuser(f"root@{TENANT_SLUG}.example.com", "unused-pass-1")
    clients = {"superuser": Client(), "tenant admin": Client()}
    clients["superuser"].force_login(superuser)
    clients["tenant admin"].force_login(staff_admin(fleet.tenant_id))
    device_id = fleet.device_ids[len(fleet.device_ids) // 2]
    for who, client in clients.items():
        for page in pages(device_id, end):
            timings, statements, status = measure(client, page, args.samples)
            p95 = percentile(timings, 0.95)
            report.add(
                Figure(
                    f"{page.name} ({who})",
                    f"p50 {statistics.median(timings) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
                    f"{statements} SQL, HTTP {status}",
                    f"p95 < {P95_TARGET_SECONDS * 1000:.0f} ms",
                    p95 < P95_TARGET_SECONDS and status == 200,
                )
            )
            logger.info("%s (%s): p95 %.0f ms", page.name, who, p95 * 1000)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--points-per-device", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--keep-database", dest="drop_database", action="store_false")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.configure_logging()
    name = common.recreate_database(args.database_url)
    report = Report(
        header=[
            f"Quantum Fleet admin benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"database: {name}",
        ]
    )
    started = time.monotonic()
    try:
        common.setup_django(args.database_url)
        report.header.extend(common.server_facts())
        run(report, args)
    finally:
        if args.drop_database:
            common.close_django_connections()
            common.drop_database(args.database_url, name)
    report.notes.append(f"total time: {time.monotonic() - started:.0f} s")
    sys.stdout.write(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
