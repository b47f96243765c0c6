from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.devices import services as device_services
from apps.devices.models import Device
from apps.telemetry.services import IngestResult, Point, ingest_points

DEVICE_TOKEN = "device-alpha-token-0123456789"
FOREIGN_DEVICE_TOKEN = "device-bravo-token-0123456789"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def device(tenant_a) -> Device:
    created, _ = device_services.create_device(
        tenant=tenant_a.tenant, name="Truck A", token=DEVICE_TOKEN, model="FMC650"
    )
    return created


@pytest.fixture
def foreign_device(tenant_b) -> Device:
    created, _ = device_services.create_device(
        tenant=tenant_b.tenant, name="Bravo secret truck", token=FOREIGN_DEVICE_TOKEN
    )
    return created


@pytest.fixture
def store() -> Callable[..., IngestResult]:
    """Store points for a device: ``store(device, (minutes_after_T0, data), ...)``."""

    def run(device: Device, *readings: tuple[float, dict[str, Any]]) -> IngestResult:
        points = [
            Point(device.tenant_id, device.pk, T0 + timedelta(minutes=minutes), data)
            for minutes, data in readings
        ]
        return ingest_points(points)

    return run
