"""End to end: calls queued by the API, made by a real Celery worker over a real Redis.

The worker is a separate process on its own Redis database (CONNECTORS_TEST_BROKER_URL,
``redis://127.0.0.1:6379/5`` by default), reading the test database, so it needs
PostgreSQL: an in-memory SQLite database cannot be shared with another process.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from apps.connectors.models import CallStatus, ConnectorCall, ConnectorLog, LogStatus
from apps.connectors.tests.conftest import make_outbound
from apps.telemetry.services import Point, ingest_points
from quantumfleet.celery import app

BROKER_URL = os.environ.get("CONNECTORS_TEST_BROKER_URL", "redis://127.0.0.1:6379/5")
BACKOFF = 0.3
ROOT = Path(settings.BASE_DIR)

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """A ``celery worker`` process on the test database, and this process sending to it."""
    with django_db_blocker.unblock():
        vendor = connection.vendor
        url = database_url() if vendor == "postgresql" else ""
    if vendor != "postgresql":
        pytest.skip("a worker process needs a database server, not an in-memory SQLite")
    broker = redis.Redis.from_url(BROKER_URL, socket_timeout=2)
    try:
        broker.flushdb()
    except redis.RedisError:
        pytest.skip(f"no Redis at {BROKER_URL}: start redis-server (.ci/run does)")

    env = {
        **os.environ,
        "DJANGO_ENV": "test",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CONNECTOR_ALLOWED_NETWORKS": "127.0.0.1/32",
        "CONNECTOR_RETRY_BACKOFF_SECONDS": str(BACKOFF),
        "CONNECTOR_RETRY_BACKOFF_MAX_SECONDS": "5",
        "CONNECTOR_MAX_ATTEMPTS": "3",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "celery", "-A", "quantumfleet", "worker", "--pool=solo"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603

    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    use_broker(broker_url=BROKER_URL, task_always_eager=False)
    try:
        wait_for(lambda: bool(app.control.ping(timeout=0.3)), what="the worker to start")
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        use_broker(**saved)
        broker.flushdb()


def use_broker(**conf: Any) -> None:
    """Point this process's Celery app elsewhere, dropping connections to the old broker.

    Eager calls earlier in the session opened a producer pool for the default broker;
    Celery keeps it until a fork, so it is dropped here the way a fork drops it.
    """
    app.conf.update(conf)
    app._after_fork()  # type: ignore[attr-defined]  # not in the type stubs


def wait_for(condition: Any, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def call_status(call_id: int) -> str:
    return str(ConnectorCall.objects.values_list("status", flat=True).get(pk=call_id))


def attempts_of(call_id: int) -> list[ConnectorLog]:
    return list(
        ConnectorLog.objects.filter(call_id=call_id).exclude(status=LogStatus.QUEUED).order_by("id")
    )


def test_a_call_is_made_by_the_worker_and_logged(worker, client_for, tenant_a, target):
    connector = make_outbound(tenant_a.tenant, target.answer("/ok", (201, {"id": 7})))

    response = client_for(tenant_a.manager).post(
        f"/connectors/{connector.pk}/call", {"payload": {"n": 1}}, format="json"
    )
    call_id = response.json()["call_id"]
    wait_for(lambda: call_status(call_id) == CallStatus.SUCCEEDED, what="the call")

    assert response.status_code == 202
    assert target.calls_to("/ok")[0].json()["payload"] == {"n": 1}
    [attempt] = attempts_of(call_id)
    assert (attempt.status, attempt.http_status, attempt.attempt) == (LogStatus.SUCCEEDED, 201, 1)


def test_a_500_is_retried_with_backoff_goes_dead_and_replays(worker, client_for, tenant_a, target):
    connector = make_outbound(tenant_a.tenant, target.answer("/down", (500, {"error": "down"})))
    client = client_for(tenant_a.manager)

    call_id = client.post(f"/connectors/{connector.pk}/call", {}, format="json").json()["call_id"]
    wait_for(lambda: call_status(call_id) == CallStatus.DEAD, what="the call to give up")

    attempts = attempts_of(call_id)
    assert [a.status for a in attempts] == [LogStatus.RETRYING, LogStatus.RETRYING, LogStatus.DEAD]
    gaps = [
        (later.created_at - earlier.created_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
    ]
    # Exponential: BACKOFF, then twice that (minus the clock's and the request's jitter).
    assert gaps[0] >= BACKOFF * 0.9
    assert gaps[1] >= 2 * BACKOFF * 0.9

    target.answer("/down", (200, {}))
    replay = client.post(f"/connectors/{connector.pk}/calls/{call_id}/replay")
    wait_for(lambda: call_status(call_id) == CallStatus.SUCCEEDED, what="the replay")

    assert replay.status_code == 202
    assert len(target.calls_to("/down")) == 4
    assert ConnectorCall.objects.get(pk=call_id).attempts == 4


def test_a_400_is_not_retried_by_the_worker(worker, client_for, tenant_a, target):
    connector = make_outbound(tenant_a.tenant, target.answer("/bad", (400, {"error": "no"})))

    response = client_for(tenant_a.manager).post(
        f"/connectors/{connector.pk}/call", {}, format="json"
    )
    call_id = response.json()["call_id"]
    wait_for(lambda: call_status(call_id) == CallStatus.FAILED, what="the call to fail")
    # Longer than the first backoff: a retry would have been made by now.
    time.sleep(BACKOFF * 1.5)

    assert len(target.calls_to("/bad")) == 1
    assert [a.status for a in attempts_of(call_id)] == [LogStatus.FAILED]


def test_a_rule_fires_through_the_worker_after_ingest(worker, client_for, tenant_a, device, target):
    connector = make_outbound(
        tenant_a.tenant, target.url("/overspeed"), body_template={"speed": "{{telemetry.data.v}}"}
    )
    rule = {
        "name": "fast",
        "connector_id": connector.pk,
        "path": "v",
        "operator": "gt",
        "value": 100,
    }
    assert client_for(tenant_a.manager).post("/rules", rule, format="json").status_code == 201
    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    ingest_points(
        [
            Point(device.tenant_id, device.pk, t0 + timedelta(seconds=second), {"v": speed})
            for second, speed in [(0, 90), (1, 130), (2, 140)]
        ]
    )
    wait_for(lambda: len(target.calls_to("/overspeed")) == 1, what="the rule's call")

    assert target.calls_to("/overspeed")[0].json() == {"speed": 130}
