"""Collector sources: polled on schedule, mapped, transformed, stored and logged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.connectors import services
from apps.connectors.models import Connector, ConnectorKind, ConnectorLog, LogStatus
from apps.connectors.tasks import poll_collectors
from apps.connectors.tests.conftest import IMEI
from apps.telemetry.models import Telemetry

pytestmark = pytest.mark.django_db

FEED = {
    "vehicles": [
        {
            "id": IMEI,
            "at": "2025-01-01T12:00:00Z",
            "speed_ms": 22.2222,
            "temp": 131.7,
            "fuel": 0.4567,
        }
    ]
}


def make_source(tenant: Any, url: str, **config: Any) -> Connector:
    connector, _ = services.save_connector(
        tenant,
        name="feed",
        kind=ConnectorKind.COLLECTOR,
        config={
            "url": url,
            "timeout": 2,
            "interval_seconds": 30,
            "mapping": {
                "items": "vehicles",
                "device": "id",
                "ts": "at",
                "fields": {"speed": "speed_ms", "temp": "temp", "fuel": "fuel"},
            },
            "transforms": {
                "speed": [{"scale": 3.6}, {"round": 1}],
                "temp": [{"clamp": [-40, 125]}],
                "fuel": [{"scale": 100}, {"round": 0}],
            },
            **config,
        },
    )
    return connector


def test_a_due_source_is_polled_transformed_and_stored(tenant_a, device, target):
    target.answer("/feed", (200, FEED))
    source = make_source(tenant_a.tenant, target.url("/feed"))

    queued = poll_collectors.delay().get()

    assert queued == 1
    assert Telemetry.objects.get().data == {"speed": 80.0, "temp": 125, "fuel": 46}
    log = ConnectorLog.objects.get()
    assert (log.direction, log.status, log.stored) == ("poll", LogStatus.SUCCEEDED, 1)
    source.refresh_from_db()
    assert source.next_poll_at is not None
    assert source.next_poll_at > timezone.now() + timedelta(seconds=25)
    assert source.last_polled_at is not None


def test_a_source_is_not_polled_before_its_interval(tenant_a, device, target):
    target.answer("/feed", (200, FEED))
    make_source(tenant_a.tenant, target.url("/feed"))
    poll_collectors.delay()

    assert poll_collectors.delay().get() == 0
    assert len(target.calls_to("/feed")) == 1


def test_a_failed_poll_is_logged_and_stores_nothing(tenant_a, device, target):
    target.answer("/feed", (503, {"error": "maintenance"}))
    make_source(tenant_a.tenant, target.url("/feed"))

    poll_collectors.delay()

    log = ConnectorLog.objects.get()
    assert (log.status, log.http_status) == (LogStatus.FAILED, 503)
    assert not Telemetry.objects.exists()


def test_a_value_that_is_not_a_number_fails_the_poll(tenant_a, device, target):
    broken = {"vehicles": [{**FEED["vehicles"][0], "temp": "hot"}]}
    target.answer("/feed", (200, broken))
    make_source(tenant_a.tenant, target.url("/feed"))

    poll_collectors.delay()

    assert "vehicles.0.data.temp" in ConnectorLog.objects.get().error
    assert not Telemetry.objects.exists()


def test_an_inactive_source_is_never_polled(tenant_a, device, target):
    source = make_source(tenant_a.tenant, target.url("/feed"))
    Connector.objects.filter(pk=source.pk).update(is_active=False)

    assert poll_collectors.delay().get() == 0
