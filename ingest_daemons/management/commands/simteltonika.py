"""``manage.py simteltonika``: simulated Teltonika trackers, one or thousands at once."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest_daemons.teltonika.simulator import ImeiRefusedError, Route, SimulatedTracker

IMEI_DIGITS = 15
MAX_CONNECT_RETRY_SECONDS = 30.0
MAX_RECORDS_PER_PACKET = 255


@dataclass
class LoadReport:
    trackers: int
    packets: int
    records: int
    seconds: float
    refused: int
    failed: int
    connect_retries: int = 0

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class Command(BaseCommand):
    help = (
        "Simulate Teltonika trackers sending Codec 8 Extended records over TCP. "
        "With --devices and --duration it becomes a load generator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=5072)
        parser.add_argument("--imei", default="356307042123456", help="IMEI of the first device.")
        parser.add_argument("--count", type=int, default=3, help="Packets per device.")
        parser.add_argument("--lat", type=float, default=-33.41)
        parser.add_argument("--lon", type=float, default=-70.61)
        parser.add_argument("--speed", type=float, default=18.5, help="km/h")
        parser.add_argument(
            "--devices", type=int, default=1, help="Trackers; IMEIs count up from --imei."
        )
        parser.add_argument("--records-per-packet", type=int, default=1)
        parser.add_argument(
            "--duration", type=float, default=0, help="Seconds to send for, instead of --count."
        )
        parser.add_argument(
            "--ramp",
            type=float,
            default=0,
            help="Seconds over which the trackers connect, each at a random moment; 0 connects "
            "them all at once.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0,
            help="Seconds between one tracker's packets, as a tracker's send period; "
            "0 sends the next packet as soon as the last is acknowledged.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        first_imei = options["imei"]
        if len(first_imei) != IMEI_DIGITS or not first_imei.isdigit():
            raise CommandError("--imei must be 15 digits.")
        if options["devices"] < 1 or options["records_per_packet"] < 1:
            raise CommandError("--devices and --records-per-packet must be at least 1.")
        if options["records_per_packet"] > MAX_RECORDS_PER_PACKET:
            raise CommandError(
                f"--records-per-packet must be at most {MAX_RECORDS_PER_PACKET}: "
                "a packet's record count is one byte."
            )
        report = asyncio.run(self.simulate(options))
        self.stdout.write(
            f"{report.trackers} device(s): {report.packets} packets, {report.records} records "
            f"acknowledged in {report.seconds:.1f} s ({report.records_per_second:,.0f} "
            f"records/s); {report.refused} refused, {report.failed} failed, "
            f"{report.connect_retries} connection attempts repeated."
        )
        if report.refused or report.failed:
            raise CommandError("Some devices were refused or lost their connection.")

    async def simulate(self, options: dict[str, Any]) -> LoadReport:
        imeis = [
            str(int(options["imei"]) + number).zfill(IMEI_DIGITS)
            for number in range(options["devices"])
        ]
        trackers = [
            SimulatedTracker(
                options["host"],
                options["port"],
                imei,
                Route(options["lat"], options["lon"], options["speed"]),
            )
            for imei in imeis
        ]
        report = LoadReport(len(trackers), 0, 0, 0.0, 0, 0)
        duration = options["duration"]
        started = time.monotonic()
        deadline = started + duration if duration else None
        progress = asyncio.create_task(self.show_progress(report, started)) if duration else None
        await asyncio.gather(
            *(self.drive(tracker, options, report, deadline) for tracker in trackers)
        )
        if progress is not None:
            progress.cancel()
            sys.stderr.write("\n")
        report.seconds = time.monotonic() - started
        return report

    async def drive(
        self,
        tracker: SimulatedTracker,
        options: dict[str, Any],
        report: LoadReport,
        deadline: float | None,
    ) -> None:
        """Connect one tracker and send its packets, each after the previous one's ACK.

        With a duration, a tracker that cannot connect tries again, waiting longer each
        time, as a tracker does after a server restart; without one it fails at once.
        """
        if options["ramp"]:
            await asyncio.sleep(random.uniform(0, options["ramp"]))  # noqa: S311
        retry_in = 1.0
        while True:
            try:
                await tracker.connect()
                break
            except ImeiRefusedError:
                report.refused += 1
                self.stderr.write(f"IMEI {tracker.imei} refused: register it as a device first.")
                return
            except OSError as error:
                reason = str(error) or type(error).__name__
                if deadline is None or time.monotonic() + retry_in >= deadline:
                    report.failed += 1
                    self.stderr.write(f"IMEI {tracker.imei}: cannot connect ({reason}).")
                    return
                report.connect_retries += 1
                await asyncio.sleep(retry_in * random.uniform(0.5, 1.5))  # noqa: S311
                retry_in = min(retry_in * 2, MAX_CONNECT_RETRY_SECONDS)
        sent = 0
        interval = options["interval"]
        # Trackers are not in step: each starts its period at its own moment.
        next_send = time.monotonic() + random.uniform(0, interval)  # noqa: S311
        try:
            while (deadline is None and sent < options["count"]) or (
                deadline is not None and time.monotonic() < deadline
            ):
                if interval:
                    if deadline is not None and next_send >= deadline:
                        break
                    # On a fixed beat, so a slow ACK does not lower the tracker's rate.
                    await asyncio.sleep(max(0.0, next_send - time.monotonic()))
                    next_send += interval
                record_count = options["records_per_packet"]
                frame = tracker.next_frame(record_count, interval or 1.0)
                acknowledged = await tracker.send_raw(frame)
                if acknowledged != record_count:
                    raise ConnectionError(f"ACK {acknowledged} for {record_count} records")
                sent += 1
                report.packets += 1
                report.records += acknowledged
        except (OSError, TimeoutError) as error:
            report.failed += 1
            self.stderr.write(f"IMEI {tracker.imei}: {str(error) or type(error).__name__}")
        finally:
            await tracker.close()

    @staticmethod
    async def show_progress(report: LoadReport, started: float) -> None:
        while True:
            await asyncio.sleep(1)
            elapsed = time.monotonic() - started
            sys.stderr.write(
                f"\r{elapsed:5.0f} s  {report.records:>10,} records acknowledged  "
                f"{report.records / elapsed:>9,.0f}/s"
            )
            sys.stderr.flush()
