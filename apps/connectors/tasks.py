"""Connector work run by Celery: outbound calls with retries, collector polls, rules."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from apps.connectors import rules, services
from apps.connectors.models import CallStatus, Connector, ConnectorKind

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="connectors.deliver_call",
    # The request's own timeout is at most 60 s (configs.MAX_TIMEOUT_SECONDS).
    soft_time_limit=90,
    time_limit=120,
    max_retries=None,
)
def deliver_call(self: Task[Any, Any], call_id: int) -> str:
    """Make the next attempt of an outbound call; schedule the one after with backoff.

    The retry policy is the service's (retryable: timeouts, connection errors, 5xx and
    429; at most CONNECTOR_MAX_ATTEMPTS per delivery), so the log and the call's status
    always agree with what the worker does next.
    """
    run_attempt = self.request.retries + 1
    status = services.attempt_call(call_id, run_attempt)
    if status == CallStatus.RETRYING:
        raise self.retry(countdown=services.backoff_seconds(run_attempt))
    return str(status)


@shared_task(name="connectors.requeue_stalled_calls", soft_time_limit=60, time_limit=120)
def requeue_stalled_calls() -> int:
    """Beat's sweep: calls whose delivery the broker lost are handed to a worker again."""
    return len(services.requeue_stalled_calls())


@shared_task(name="connectors.poll_collectors", soft_time_limit=30, time_limit=60)
def poll_collectors() -> int:
    """Beat's tick: queue a poll of every collector source that is due."""
    claimed = services.claim_due_collectors()
    for connector_id in claimed:
        poll_source.delay(connector_id)
    return len(claimed)


@shared_task(name="connectors.poll_source", soft_time_limit=90, time_limit=120)
def poll_source(connector_id: int) -> str:
    """Fetch one collector source and store what it returns. A failed poll is logged and
    not retried: the next one is due after the source's interval anyway."""
    connector = Connector.objects.filter(
        pk=connector_id, kind=ConnectorKind.COLLECTOR, is_active=True
    ).first()
    if connector is None:
        return "gone"
    return str(services.poll_source(connector).status)


@shared_task(
    name="connectors.evaluate_rules",
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=(Exception,),
    retry_backoff=5,
    max_retries=3,
)
def evaluate_rules(tenant_id: int, ranges: list[list[Any]]) -> int:
    """Compare newly stored points of a tenant with its rules; returns the calls queued."""
    return rules.evaluate(tenant_id, ranges)
