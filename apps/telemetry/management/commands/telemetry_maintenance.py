"""``manage.py telemetry_maintenance``: partitions ahead, stray rows adopted, retention."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.telemetry.partitions import run_maintenance


class Command(BaseCommand):
    help = (
        "Create telemetry partitions ahead of time, move rows out of the default partition "
        "and apply retention (PostgreSQL); on SQLite, delete rows past retention."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = run_maintenance()
        self.stdout.write(f"Telemetry maintenance: {report.summary()}.")
