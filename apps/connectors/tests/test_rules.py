"""Rules fire outbound calls from stored telemetry, once per cooldown, without touching ingest."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.connectors.models import ConnectorCall, Rule
from apps.connectors.rules import queue_rule_evaluation
from apps.connectors.tests.conftest import make_outbound
from apps.telemetry.services import IngestResult, Point, ingest_points, points_stored

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def store(device: Any, *readings: tuple[float, dict[str, Any]]) -> IngestResult:
    points = [
        Point(device.tenant_id, device.pk, T0 + timedelta(minutes=minutes), data)
        for minutes, data in readings
    ]
    return ingest_points(points)


def add_rule(client: Any, connector: Any, **fields: Any) -> Any:
    body = {"name": "overspeed", "connector_id": connector.pk, **fields}
    response = client.post("/rules", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_overspeed_fires_once_per_cooldown(
    client_for, tenant_a, device, target, django_capture_on_commit_callbacks
):
    connector = make_outbound(
        tenant_a.tenant,
        target.url("/overspeed"),
        body_template={"imei": "{{device.external_id}}", "speed": "{{telemetry.data.speed}}"},
    )
    add_rule(
        client_for(tenant_a.manager),
        connector,
        path="speed",
        operator="gt",
        value=100,
        cooldown_seconds=300,
    )

    with django_capture_on_commit_callbacks(execute=True):
        store(device, (0, {"speed": 90}), (1, {"speed": 120}), (2, {"speed": 130}))
    with django_capture_on_commit_callbacks(execute=True):
        store(device, (4, {"speed": 125}))
    with django_capture_on_commit_callbacks(execute=True):
        store(device, (7, {"speed": 140}))

    sent = [request.json() for request in target.calls_to("/overspeed")]
    assert sent == [
        {"imei": device.external_id, "speed": 120},
        {"imei": device.external_id, "speed": 140},
    ]
    assert ConnectorCall.objects.filter(rule__isnull=False).count() == 2


def test_a_change_of_value_fires_on_the_change_only(
    client_for, tenant_a, device, target, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/ignition"))
    add_rule(
        client_for(tenant_a.manager),
        connector,
        name="ignition on",
        path="io.239",
        operator="changed_to",
        value=1,
        cooldown_seconds=0,
    )

    with django_capture_on_commit_callbacks(execute=True):
        store(device, (0, {"io": {"239": 1}}), (1, {"io": {"239": 0}}), (2, {"io": {"239": 1}}))
    with django_capture_on_commit_callbacks(execute=True):
        store(device, (3, {"io": {"239": 1}}), (4, {"io": {"239": 0}}))

    assert len(target.calls_to("/ignition")) == 1


def test_history_uploaded_late_does_not_fire(
    client_for, tenant_a, device, target, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/late"))
    add_rule(client_for(tenant_a.manager), connector, path="speed", operator="gt", value=100)
    with django_capture_on_commit_callbacks(execute=True):
        store(device, (10, {"speed": 50}))

    with django_capture_on_commit_callbacks(execute=True):
        store(device, (5, {"speed": 150}))

    assert target.calls_to("/late") == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"path": "speed", "operator": "gt", "value": "fast"}, "value"),
        ({"path": "speed", "operator": "changed_to"}, "value"),
        ({"path": "speed..x", "operator": "changed"}, "path"),
        ({"path": "speed", "operator": "within"}, "operator"),
    ],
)
def test_a_bad_rule_is_a_400_naming_the_field(client_for, tenant_a, target, fields, field):
    connector = make_outbound(tenant_a.tenant, target.url("/x"))
    body = {"name": "r", "connector_id": connector.pk, **fields}

    response = client_for(tenant_a.manager).post("/rules", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Rule.objects.exists()


def test_a_rule_cannot_call_another_tenants_connector(client_for, tenant_a, tenant_b, target):
    foreign = make_outbound(tenant_b.tenant, target.url("/x"))
    body = {"name": "r", "connector_id": foreign.pk, "path": "a", "operator": "changed"}

    response = client_for(tenant_a.manager).post("/rules", body, format="json")

    assert response.status_code == 400
    assert "connector_id" in response.json()["errors"]


def test_without_rules_the_ingest_hook_makes_no_query_and_costs_little(tenant_a, device):
    points = [
        Point(device.tenant_id, device.pk, T0 + timedelta(seconds=index), {"speed": index})
        for index in range(10_000)
    ]
    keys = {(point.device_id, point.ts) for point in points}
    queue_rule_evaluation(None, points, keys)  # fills the cache

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        for _ in range(5):
            queue_rule_evaluation(None, points, keys)
        per_batch = (time.perf_counter() - started) / 5

    assert len(queries) == 0
    # Storing 10,000 points takes hundreds of milliseconds; the hook must stay far below.
    assert per_batch < 0.02


def test_a_failing_receiver_never_fails_ingest(tenant_a, device):
    def broken(sender, **kwargs):
        raise RuntimeError("rules are down")

    points_stored.connect(broken, dispatch_uid="test-broken-receiver")
    try:
        result = store(device, (0, {"speed": 1}))
    finally:
        points_stored.disconnect(dispatch_uid="test-broken-receiver")

    assert result.stored == 1


def test_with_the_broker_down_ingest_goes_on_and_stops_trying_for_a_while(
    client_for, tenant_a, device, target, django_capture_on_commit_callbacks
):
    from apps.connectors import rules
    from quantumfleet.celery import app

    connector = make_outbound(tenant_a.tenant, target.url("/x"))
    add_rule(client_for(tenant_a.manager), connector, path="speed", operator="gt", value=1)
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    # A port nothing listens on: the broker refuses at once.
    app.conf.update(broker_url="redis://127.0.0.1:1/0", task_always_eager=False)
    app._after_fork()  # type: ignore[attr-defined]  # not in the type stubs
    started = time.perf_counter()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = store(device, (0, {"speed": 5}))
        skipped_until = rules._broker_down_until
        with django_capture_on_commit_callbacks(execute=True):
            second = store(device, (1, {"speed": 6}))
        elapsed = time.perf_counter() - started
    finally:
        app.conf.update(saved)
        app._after_fork()  # type: ignore[attr-defined]
        rules._broker_down_until = 0.0
        rules.drop_publisher()

    assert (first.stored, second.stored) == (1, 1)
    assert skipped_until > time.monotonic()
    assert target.received == []
    # One quick refused attempt, then none: the second batch did not wait on the broker.
    assert elapsed < 2


def test_with_the_broker_frozen_ingest_waits_at_most_the_publish_timeout(
    client_for, tenant_a, device, target, django_capture_on_commit_callbacks
):
    """A Redis that hangs instead of refusing: the socket timeout bounds the wait."""
    from apps.connectors import rules
    from quantumfleet.celery import app
    from tests.faults.services import PrivateRedis, ServiceUnavailableError

    try:
        redis = PrivateRedis()
    except ServiceUnavailableError as error:
        pytest.skip(str(error))
    redis.start()
    connector = make_outbound(tenant_a.tenant, target.url("/x"))
    add_rule(client_for(tenant_a.manager), connector, path="speed", operator="gt", value=1)
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=redis.url, task_always_eager=False)
    app._after_fork()  # type: ignore[attr-defined]  # not in the type stubs
    try:
        # The publisher's connection is made while Redis answers, then Redis freezes.
        with django_capture_on_commit_callbacks(execute=True):
            first = store(device, (0, {"speed": 5}))
        assert rules._broker_down_until == 0.0
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)
        started = time.perf_counter()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            second = store(device, (1, {"speed": 6}))
        # The queueing runs after the commit; in a thread, so a hang fails, not blocks.
        queueing = threading.Thread(target=callbacks[0], daemon=True)
        queueing.start()
        queueing.join(5)
        elapsed = time.perf_counter() - started
        assert not queueing.is_alive(), "ingest waited on the frozen broker"
        skipped_until = rules._broker_down_until
    finally:
        if redis.process is not None:
            redis.process.send_signal(signal.SIGCONT)
        redis.close()
        app.conf.update(saved)
        app._after_fork()  # type: ignore[attr-defined]
        rules._broker_down_until = 0.0
        rules.drop_publisher()

    assert (first.stored, second.stored) == (1, 1)
    assert elapsed < 2
    assert skipped_until > time.monotonic()
