"""Rules: fire an outbound connector when stored telemetry matches a condition.

Ingest announces each committed batch (``apps.telemetry.services.points_stored``).
``queue_rule_evaluation`` is the only code that runs inside ingest: for a tenant without
rules it is a set lookup in a short-lived cache, with no query and no message. For a
tenant with rules it queues one small task per batch (device ids and a time range, not
the data); the worker reads the points back and compares them. Ingest never waits for a
rule and no rule error reaches it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.connectors.mapping import MISSING, get_path
from apps.connectors.models import ConnectorKind, Rule, RuleDeviceState, RuleOperator
from apps.devices.models import Device
from apps.telemetry.models import Telemetry
from apps.telemetry.services import Point

logger = logging.getLogger(__name__)

# tenant id -> (has active rules, monotonic time the answer expires)
_rules_cache: dict[int, tuple[bool, float]] = {}
_rules_cache_lock = threading.Lock()
# After a failed enqueue, batches skip the broker until then instead of each waiting on it.
_broker_down_until = 0.0
_publishers = threading.local()
PUBLISH_TIMEOUT_SECONDS = 0.5


def tenants_with_rules(tenant_ids: Iterable[int]) -> set[int]:
    """Which of these tenants have an active rule, answered from a cache of a few seconds.

    A rule saved in another process is seen here once the cached answer expires
    (CONNECTOR_RULES_CACHE_SECONDS): points stored in that window are not evaluated.
    """
    now = time.monotonic()
    answer, unknown = set(), []
    for tenant_id in tenant_ids:
        cached = _rules_cache.get(tenant_id)
        if cached is None or cached[1] <= now:
            unknown.append(tenant_id)
        elif cached[0]:
            answer.add(tenant_id)
    if unknown:
        having = set(
            Rule.objects.filter(tenant_id__in=unknown, is_active=True)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
        expires = now + settings.CONNECTOR_RULES_CACHE_SECONDS
        with _rules_cache_lock:
            for tenant_id in unknown:
                _rules_cache[tenant_id] = (tenant_id in having, expires)
        answer |= having
    return answer


def forget_rules_of(tenant_id: int | None = None) -> None:
    """Drop cached answers (one tenant's, or all) after rules change in this process."""
    with _rules_cache_lock:
        if tenant_id is None:
            _rules_cache.clear()
        else:
            _rules_cache.pop(tenant_id, None)


def queue_rule_evaluation(
    sender: Any, points: Sequence[Point], stored_keys: set[tuple[int, datetime]], **kwargs: Any
) -> None:
    """Receiver of ``points_stored``: queue rule evaluation for tenants that have rules."""
    tenant_ids = {point.tenant_id for point in points}
    watched = tenants_with_rules(tenant_ids)
    if not watched:
        return

    tenant_of = {point.device_id: point.tenant_id for point in points if point.tenant_id in watched}
    spans: dict[int, dict[int, list[datetime]]] = {}
    for device_id, ts in stored_keys:
        tenant_id = tenant_of.get(device_id)
        if tenant_id is None:
            continue
        span = spans.setdefault(tenant_id, {}).setdefault(device_id, [ts, ts])
        if ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts

    for tenant_id, devices in spans.items():
        ranges = [
            [device_id, low.isoformat(), high.isoformat()]
            for device_id, (low, high) in devices.items()
        ]
        transaction.on_commit(partial(enqueue_evaluation, tenant_id, ranges))


def enqueue_evaluation(tenant_id: int, ranges: list[list[Any]]) -> None:
    from apps.connectors.tasks import evaluate_rules

    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return
    if evaluate_rules.app.conf.task_always_eager:
        evaluate_rules.delay(tenant_id, ranges)
        return
    try:
        evaluate_rules.apply_async((tenant_id, ranges), producer=publisher(), retry=False)
    except Exception:
        # TODO: points stored while the broker is down are never evaluated, so an alert
        # can be missed; a durable outbox row written with the batch would close the gap.
        _broker_down_until = time.monotonic() + settings.CONNECTOR_RULES_CACHE_SECONDS
        drop_publisher()
        logger.exception("rules.enqueue_failed", extra={"tenant_id": tenant_id})


def publisher() -> Any:
    """This thread's producer for rule tasks, on a connection made to fail fast.

    Celery's own connections retry for seconds when the broker does not answer; this one
    tries once, briefly, because the thread waiting on it has just stored telemetry.
    """
    producer = getattr(_publishers, "producer", None)
    if producer is None:
        from quantumfleet.celery import app

        # The socket timeout too: a broker that hangs instead of refusing (a frozen Redis)
        # would otherwise hold every ingest batch until it answers.
        connection = app.connection_for_write(
            connect_timeout=PUBLISH_TIMEOUT_SECONDS,
            transport_options={"max_retries": 0, "socket_timeout": PUBLISH_TIMEOUT_SECONDS},
        )
        producer = connection.Producer()
        _publishers.producer = producer
    return producer


def drop_publisher() -> None:
    producer = getattr(_publishers, "producer", None)
    _publishers.producer = None
    if producer is not None:
        producer.connection.close()


def evaluate(tenant_id: int, ranges: list[list[Any]]) -> int:
    """Compare the stored points in ``ranges`` with the tenant's rules; calls queued."""
    rules = list(
        Rule.objects.for_tenant(tenant_id)
        .filter(is_active=True, connector__is_active=True)
        .filter(connector__kind=ConnectorKind.OUTBOUND_HTTP)
        .select_related("connector")
    )
    fired = 0
    for device_id, low, high in ranges:
        applicable = [rule for rule in rules if rule.device_id in (None, device_id)]
        if not applicable:
            continue
        points = list(
            Telemetry.objects.filter(
                tenant_id=tenant_id, device_id=device_id, ts__gte=low, ts__lte=high
            )
            .order_by("ts")
            .values_list("ts", "data")
        )
        device = Device.objects.filter(pk=device_id).first()
        if device is None or not points:
            continue
        for rule in applicable:
            fired += evaluate_rule(rule, device, points)
    return fired


@transaction.atomic
def evaluate_rule(rule: Rule, device: Device, points: list[tuple[datetime, Any]]) -> int:
    """Walk one device's new points through one rule; the device's state row is locked, so
    two workers evaluating overlapping batches fire once."""
    from apps.connectors.services import call_context, queue_call

    RuleDeviceState.objects.get_or_create(rule=rule, device=device, tenant_id=rule.tenant_id)
    state = RuleDeviceState.objects.select_for_update().get(rule=rule, device=device)
    fired = 0
    for ts, data in points:
        # Points at or before the last one evaluated were seen already, or are history
        # uploaded late: rules watch what happens now, not the past.
        if state.last_ts is not None and ts <= state.last_ts:
            continue
        value = get_path(data, rule.path)
        if value is MISSING:
            continue
        had_previous = state.last_ts is not None and state.last_value is not None
        matched = matches(rule, value, state.last_value if had_previous else MISSING)
        state.last_ts, state.last_value = ts, value
        if not matched:
            continue
        cooled = (
            state.last_fired_ts is None
            or (ts - state.last_fired_ts).total_seconds() >= rule.cooldown_seconds
        )
        if not cooled:
            continue
        state.last_fired_ts = ts
        point = {"ts": ts.isoformat(), "data": data}
        queue_call(
            rule.connector,
            call_context(rule.connector, device=device, point=point, rule=rule),
            rule,
        )
        fired += 1
        logger.info(
            "rules.fired",
            extra={"rule_id": rule.pk, "device_id": device.pk, "tenant_id": rule.tenant_id},
        )
    state.save()
    return fired


def matches(rule: Rule, value: Any, previous: Any) -> bool:
    """Whether a value meets the rule; ``previous`` is MISSING before the first one."""
    operator = rule.operator
    if operator == RuleOperator.CHANGED:
        return previous is not MISSING and value != previous
    if operator == RuleOperator.CHANGED_TO:
        return previous is not MISSING and value == rule.value and previous != rule.value
    if operator == RuleOperator.EQ:
        return bool(value == rule.value)
    if operator == RuleOperator.NE:
        return bool(value != rule.value)
    if not (is_number(value) and is_number(rule.value)):
        return False
    if operator == RuleOperator.GT:
        return bool(value > rule.value)
    if operator == RuleOperator.GTE:
        return bool(value >= rule.value)
    if operator == RuleOperator.LT:
        return bool(value < rule.value)
    return bool(value <= rule.value)


def is_number(value: Any) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))
