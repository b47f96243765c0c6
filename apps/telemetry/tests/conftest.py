from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from apps.devices import services as device_services
from apps.devices.models import Device
from apps.telemetry import limits
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


LIMITS_REDIS_URL = os.environ.get("INGEST_LIMITS_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")


def redis_or_skip(url: str) -> None:
    """Skip without a Redis here, except in CI, where a missing Redis is a failure."""
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}: start redis-server (.ci/run does)")


@pytest.fixture
def limits_on(settings) -> Iterator[Any]:
    """Ingest limits enforced, counted in the real Redis under keys of this test alone."""
    redis_or_skip(LIMITS_REDIS_URL)
    settings.INGEST_LIMITS_ENABLED = True
    settings.INGEST_LIMITS_REDIS_URL = LIMITS_REDIS_URL
    settings.INGEST_LIMITS_KEY_PREFIX = f"qf-test:{uuid.uuid4().hex}"
    limits.reset_limiter()
    yield limits
    limits.reset_limiter()
