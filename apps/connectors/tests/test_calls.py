"""Outbound calls, run eagerly here: attempts, retries, dead calls, replays, SSRF refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.connectors import services
from apps.connectors.models import CallStatus, ConnectorCall, ConnectorLog, LogStatus
from apps.connectors.outbound import signature_matches
from apps.connectors.tests.conftest import make_outbound

pytestmark = pytest.mark.django_db


def call(client: Any, connector: Any, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/connectors/{connector.pk}/call", body or {}, format="json")


def test_a_call_is_queued_made_and_logged(
    client_for, tenant_a, target, device, django_capture_on_commit_callbacks
):
    url = target.answer("/alerts", (200, {"received": True}))
    connector = make_outbound(
        tenant_a.tenant,
        url,
        body_template={"vehicle": "{{device.name}}", "note": "{{payload.note}}"},
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = call(
            client_for(tenant_a.manager),
            connector,
            {"payload": {"note": "hi"}, "device_id": device.pk},
        )

    assert response.status_code == 202
    queued = ConnectorLog.objects.get(pk=response.json()["log_id"])
    assert queued.status == LogStatus.QUEUED
    assert [r.json() for r in target.calls_to("/alerts")] == [{"vehicle": "Truck A", "note": "hi"}]
    attempt = ConnectorLog.objects.filter(status=LogStatus.SUCCEEDED).get()
    assert (attempt.http_status, attempt.attempt) == (200, 1)
    assert "received" in attempt.response_excerpt
    assert ConnectorCall.objects.get().status == CallStatus.SUCCEEDED


def test_a_500_is_retried_then_the_call_is_dead_and_can_be_replayed(
    client_for, tenant_a, target, django_capture_on_commit_callbacks
):
    url = target.answer("/flaky", (500, {"error": "down"}))
    connector = make_outbound(tenant_a.tenant, url)
    client = client_for(tenant_a.manager)

    with django_capture_on_commit_callbacks(execute=True):
        call_id = call(client, connector).json()["call_id"]

    statuses = list(
        ConnectorLog.objects.filter(call_id=call_id)
        .exclude(status=LogStatus.QUEUED)
        .order_by("id")
        .values_list("status", flat=True)
    )
    assert statuses == [LogStatus.RETRYING, LogStatus.RETRYING, LogStatus.DEAD]
    assert len(target.calls_to("/flaky")) == 3
    assert ConnectorCall.objects.get().status == CallStatus.DEAD

    target.answer("/flaky", (200, {}))
    with django_capture_on_commit_callbacks(execute=True):
        replay = client.post(f"/connectors/{connector.pk}/calls/{call_id}/replay")

    assert replay.status_code == 202
    replayed = ConnectorCall.objects.get()
    assert (replayed.status, replayed.attempts) == (CallStatus.SUCCEEDED, 4)


def test_a_400_is_not_retried(client_for, tenant_a, target, django_capture_on_commit_callbacks):
    url = target.answer("/strict", (400, {"error": "bad field"}))
    connector = make_outbound(tenant_a.tenant, url)

    with django_capture_on_commit_callbacks(execute=True):
        call(client_for(tenant_a.manager), connector)

    assert len(target.calls_to("/strict")) == 1
    failed = ConnectorLog.objects.exclude(status=LogStatus.QUEUED).get()
    assert (failed.status, failed.http_status) == (LogStatus.FAILED, 400)
    assert ConnectorCall.objects.get().status == CallStatus.FAILED


def test_a_running_call_cannot_be_replayed(client_for, tenant_a, target):
    connector = make_outbound(tenant_a.tenant, target.url("/x"))
    call_id = call(client_for(tenant_a.manager), connector).json()["call_id"]

    response = client_for(tenant_a.manager).post(
        f"/connectors/{connector.pk}/calls/{call_id}/replay"
    )

    assert response.status_code == 400


def test_a_target_that_became_private_is_refused_at_call_time(
    client_for, tenant_a, target, settings, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/internal"))
    settings.CONNECTOR_ALLOWED_NETWORKS = []

    with django_capture_on_commit_callbacks(execute=True):
        call(client_for(tenant_a.manager), connector)

    assert target.received == []
    refused = ConnectorLog.objects.exclude(status=LogStatus.QUEUED).get()
    assert refused.status == LogStatus.FAILED
    assert "loopback" in refused.error
    assert ConnectorCall.objects.get().attempts == 1


def test_a_name_resolving_to_loopback_is_refused(
    client_for, tenant_a, target, settings, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/x").replace("127.0.0.1", "localhost"))
    settings.CONNECTOR_ALLOWED_NETWORKS = []

    with django_capture_on_commit_callbacks(execute=True):
        call(client_for(tenant_a.manager), connector)

    assert target.received == []
    assert "localhost resolves to" in ConnectorCall.objects.get().last_error


def test_secrets_are_sent_but_masked_in_the_log(
    client_for, tenant_a, target, django_capture_on_commit_callbacks
):
    secret = "hmac-key-that-must-not-leak"
    connector = make_outbound(tenant_a.tenant, target.url("/signed"), auth="hmac", secret=secret)

    with django_capture_on_commit_callbacks(execute=True):
        call(client_for(tenant_a.manager), connector, {"payload": {"echo": secret}})

    received = target.calls_to("/signed")[0]
    assert signature_matches(secret, received.body, received.headers["X-Signature"])
    attempt = ConnectorLog.objects.get(status=LogStatus.SUCCEEDED)
    assert secret not in attempt.request_excerpt
    assert received.headers["X-Signature"] not in attempt.request_excerpt


def test_bearer_auth_is_masked_in_the_log(
    client_for, tenant_a, target, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/b"), auth="bearer", secret="tok-123456")

    with django_capture_on_commit_callbacks(execute=True):
        call(client_for(tenant_a.manager), connector)

    assert target.calls_to("/b")[0].headers["Authorization"] == "Bearer tok-123456"
    assert "tok-123456" not in ConnectorLog.objects.get(status=LogStatus.SUCCEEDED).request_excerpt


def test_a_call_whose_delivery_the_broker_lost_is_sent_by_the_sweep(
    client_for, tenant_a, target, settings, django_capture_on_commit_callbacks
):
    url = target.answer("/lost", (200, {"ok": True}))
    connector = make_outbound(tenant_a.tenant, url)
    # The 202 was given, then the broker lost the message: no callback ever runs.
    with django_capture_on_commit_callbacks(execute=False):
        response = call(client_for(tenant_a.manager), connector, {"payload": {"n": 1}})
    assert response.status_code == 202
    lost = ConnectorCall.objects.get()
    recent = ConnectorCall.objects.create(
        tenant=tenant_a.tenant, connector=connector, context={"payload": {"n": 2}}
    )
    long_ago = timezone.now() - timedelta(seconds=settings.CONNECTOR_STALLED_CALL_SECONDS + 60)
    ConnectorCall.objects.filter(pk=lost.pk).update(updated_at=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        requeued = services.requeue_stalled_calls()

    assert requeued == [lost.pk]
    assert [r.json()["payload"] for r in target.calls_to("/lost")] == [{"n": 1}]
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert (lost.status, recent.status) == (CallStatus.SUCCEEDED, CallStatus.QUEUED)
    # Touched by the sweep: the next one leaves it alone.
    assert services.requeue_stalled_calls() == []


def test_a_retrying_call_is_left_alone_for_its_longest_backoff(tenant_a, target, settings):
    connector = make_outbound(tenant_a.tenant, target.url("/slow"))
    waiting = ConnectorCall.objects.create(
        tenant=tenant_a.tenant, connector=connector, status=CallStatus.RETRYING
    )
    now = timezone.now()
    within_backoff = now - timedelta(seconds=settings.CONNECTOR_STALLED_CALL_SECONDS + 0.1)
    ConnectorCall.objects.filter(pk=waiting.pk).update(updated_at=within_backoff)

    assert services.requeue_stalled_calls(now) == []
    assert services.requeue_stalled_calls(now + timedelta(hours=2)) == [waiting.pk]
