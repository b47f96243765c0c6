"""Ingest limits on the daemons: a Teltonika packet over the limit is left unacknowledged
(the tracker keeps it and sends it again), an MQTT message over it is refused and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.telemetry import limits
from apps.telemetry.models import Telemetry
from apps.telemetry.tests.conftest import limits_on  # noqa: F401  (a fixture)
from ingest_daemons.teltonika import codec
from ingest_daemons.teltonika.simulator import Route, make_record
from ingest_daemons.tests.conftest import IMEI, MQTT_TOKEN, NO_ACK_WAIT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FROZEN_NOW = 1_800_000_030.0
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def frame(count: int, start: datetime) -> bytes:
    route = Route(54.6676016, 25.2562916, 50.0)
    start_ms = int(start.timestamp() * 1000)
    made = [make_record(route, start_ms + index * 1000) for index in range(count)]
    return codec.encode_avl_frame(codec.CODEC_8E, made)


@pytest.fixture
def frozen_limiter(limits_on):  # noqa: F811  (the imported fixture)
    limiter = limits.limiter()
    limiter.clock = lambda: FROZEN_NOW
    return limiter


def test_a_packet_over_the_limit_is_not_acknowledged_until_the_next_window(
    plain_tracker, tracker_device, tenant_a, frozen_limiter
):
    tenant_a.tenant.device_points_per_minute = 10
    tenant_a.tenant.save()
    tracker = plain_tracker()
    tracker.handshake(IMEI)
    tracker.send(frame(10, T0))
    assert tracker.ack() == 10

    later = frame(5, T0 + timedelta(minutes=1))
    tracker.send(later)

    assert tracker.ack(timeout=NO_ACK_WAIT) is None
    assert not tracker.is_closed_by_server(timeout=0.2)
    assert Telemetry.objects.filter(device=tracker_device).count() == 10

    # The tracker sends the same packet again after its response timeout.
    frozen_limiter.clock = lambda: FROZEN_NOW + 60
    tracker.send(later)

    assert tracker.ack() == 5
    assert Telemetry.objects.filter(device=tracker_device).count() == 15


def test_an_mqtt_message_over_the_limit_is_refused_and_counted(
    start_consumer, publisher, mqtt_broker, mqtt_device, tenant_a, frozen_limiter
):
    tenant_a.tenant.device_points_per_minute = 2
    tenant_a.tenant.save()
    running = start_consumer()
    topic = mqtt_broker.topic_of(MQTT_TOKEN)

    for second in range(3):
        publisher.send(topic, {"ts": (T0 + timedelta(seconds=second)).isoformat(), "data": {}})
    publisher.flush()
    wait_until(lambda: running.totals.acknowledged == 3, what="three PUBACKs")

    assert Telemetry.objects.filter(device=mqtt_device).count() == 2
    assert running.totals.rejected == 1
    refused = frozen_limiter.refused_last_hour(tenant_a.tenant.pk)
    assert refused["device_rate"] == 1
