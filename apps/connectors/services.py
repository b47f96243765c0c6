"""Connector operations: saving, outbound calls and their attempts, webhooks, collector polls.

Every telemetry point that arrives through a webhook or a collector source is stored by
``apps.telemetry.services.ingest_points``, like every other transport's.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import serializers

from apps.audit.services import record_event_after_commit
from apps.connectors import outbound
from apps.connectors.configs import ConfigError, validate_config
from apps.connectors.mapping import MappedItem, MappingError, apply_transforms, map_items
from apps.connectors.mapping import render_template as fill_template
from apps.connectors.models import (
    CallStatus,
    Connector,
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Direction,
    LogStatus,
    Rule,
)
from apps.devices.models import Device
from apps.devices.services import devices_by_token_hash, hash_device_token
from apps.telemetry.api.ingest import RawPoint, to_readings
from apps.telemetry.services import IngestResult, InvalidPointError, Point, ingest_points
from apps.tenants.models import Tenant
from quantumfleet.api.errors import flatten_errors

logger = logging.getLogger(__name__)

WEBHOOK_TOKEN_BYTES = 32
WEBHOOK_TOKEN_PREFIX_LENGTH = 8
FINISHED = (CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.DEAD)
# A sweep hands back at most this many calls; the next one takes the rest.
STALLED_CALLS_PER_SWEEP = 1_000


# Saving connectors.


@transaction.atomic
def save_connector(
    tenant: Tenant,
    *,
    name: str,
    kind: str,
    config: Any,
    secret: str | None = None,
    is_active: bool = True,
    instance: Connector | None = None,
    user: Any = None,
) -> tuple[Connector, str | None]:
    """Create or change a connector; returns it and a new webhook token, shown only now.

    ``secret=None`` keeps the stored secret. Raises ConfigError naming the bad field.
    """
    connector = instance or Connector(tenant=tenant)
    kept_secret = connector.secret if secret is None else secret
    checked = validate_config(kind, config, kept_secret)
    if "url" in checked:
        try:
            outbound.check_url(checked["url"])
        except outbound.TargetRefusedError as error:
            raise ConfigError("config.url", f"Refused: {error}") from None

    created = connector.pk is None
    connector.name, connector.kind, connector.config = name, kind, checked
    connector.secret, connector.is_active = kept_secret, is_active
    token = None
    if kind == ConnectorKind.WEBHOOK and not connector.webhook_token_hash:
        token = set_webhook_token(connector)
    if kind == ConnectorKind.COLLECTOR and (created or connector.next_poll_at is None):
        connector.next_poll_at = timezone.now()
    connector.save()
    record_connector_event("connector.created" if created else "connector.updated", connector, user)
    return connector, token


def upsert_connector(
    tenant: Tenant, *, name: str, user: Any = None, **fields: Any
) -> tuple[Connector, bool, str | None]:
    """The original ``POST /connectors``: update the tenant's connector of that name, or
    create it. Returns it, whether it was created, and a new webhook token if any."""
    existing = Connector.objects.for_tenant(tenant).filter(name=name).first()
    connector, token = save_connector(tenant, name=name, instance=existing, user=user, **fields)
    return connector, existing is None, token


@transaction.atomic
def delete_connector(connector: Connector, user: Any = None) -> None:
    record_connector_event("connector.deleted", connector, user)
    connector.delete()


def set_webhook_token(connector: Connector) -> str:
    token = secrets.token_urlsafe(WEBHOOK_TOKEN_BYTES)
    connector.webhook_token_hash = hash_device_token(token)
    connector.webhook_token_prefix = token[:WEBHOOK_TOKEN_PREFIX_LENGTH]
    return token


@transaction.atomic
def rotate_webhook_token(connector: Connector, user: Any = None) -> str:
    """A new token for a webhook; the old URL answers 404 from now on."""
    token = set_webhook_token(connector)
    connector.save(update_fields=["webhook_token_hash", "webhook_token_prefix", "updated_at"])
    record_connector_event("connector.updated", connector, user)
    return token


def record_connector_event(event: str, connector: Connector, user: Any) -> None:
    """Put a change of a connector on the audit trail once committed; never its secret."""
    record_event_after_commit(
        event,
        tenant_id=connector.tenant_id,
        user_id=getattr(user, "pk", None),
        payload={"connector_id": connector.pk, "name": connector.name, "kind": connector.kind},
    )
    logger.info(
        event,
        extra={
            "connector_id": connector.pk,
            "tenant_id": connector.tenant_id,
            "user_id": getattr(user, "pk", None),
        },
    )


# Outbound calls.


def call_context(
    connector: Connector,
    *,
    payload: Any = None,
    device: Device | None = None,
    point: Mapping[str, Any] | None = None,
    rule: Rule | None = None,
) -> dict[str, Any]:
    """What a body template can use; stored with the call so a replay sends the same body."""
    return {
        "connector": {"id": connector.pk, "name": connector.name},
        "device": (
            None
            if device is None
            else {"id": device.pk, "name": device.name, "external_id": device.external_id}
        ),
        "telemetry": None if point is None else dict(point),
        "rule": None if rule is None else {"id": rule.pk, "name": rule.name},
        "payload": payload,
    }


@transaction.atomic
def queue_call(
    connector: Connector, context: dict[str, Any], rule: Rule | None = None
) -> tuple[ConnectorCall, ConnectorLog]:
    """Record an outbound call and hand it to a worker once the record is committed."""
    call = ConnectorCall.objects.create(
        tenant_id=connector.tenant_id, connector=connector, rule=rule, context=context
    )
    log = queued_log(call)
    enqueue_delivery(call.pk)
    return call, log


@transaction.atomic
def replay_call(call: ConnectorCall) -> ConnectorLog:
    """Send a finished call again, with the same body, for another round of attempts."""
    call.status, call.finished_at = CallStatus.QUEUED, None
    call.save(update_fields=["status", "finished_at", "updated_at"])
    log = queued_log(call)
    enqueue_delivery(call.pk)
    logger.info("connector.call_replayed", extra={"call_id": call.pk, "tenant_id": call.tenant_id})
    return log


def queued_log(call: ConnectorCall) -> ConnectorLog:
    return ConnectorLog.objects.create(
        tenant_id=call.tenant_id,
        connector_id=call.connector_id,
        call=call,
        direction=Direction.OUTBOUND,
        status=LogStatus.QUEUED,
        attempt=call.attempts,
    )


def enqueue_delivery(call_id: int) -> None:
    from apps.connectors.tasks import deliver_call

    # After the commit: a worker that starts at once must find the call.
    transaction.on_commit(lambda: deliver_call.delay(call_id))


def requeue_stalled_calls(now: datetime | None = None) -> list[int]:
    """Hand a worker again the calls whose delivery message was lost; their ids.

    A call waits for a worker in the Celery broker: a broker that restarts without its
    queue (Redis without persistence, a lost volume) drops it, and the call would stay
    queued for ever after its 202. A queued call untouched for CONNECTOR_STALLED_CALL_SECONDS,
    or a retrying one untouched for that plus the longest backoff, is sent again. Marking
    it touched makes the next sweep leave it alone for as long again. If the original
    message was only late (workers far behind), the call may be attempted twice, which
    outbound delivery's at-least-once promise already allows.
    """
    now = now or timezone.now()
    queued_before = now - timedelta(seconds=settings.CONNECTOR_STALLED_CALL_SECONDS)
    retrying_before = queued_before - timedelta(
        seconds=settings.CONNECTOR_RETRY_BACKOFF_MAX_SECONDS
    )
    with transaction.atomic():
        stalled = list(
            ConnectorCall.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=CallStatus.QUEUED, updated_at__lt=queued_before)
                | Q(status=CallStatus.RETRYING, updated_at__lt=retrying_before)
            )
            .order_by("updated_at")
            .values_list("pk", flat=True)[:STALLED_CALLS_PER_SWEEP]
        )
        if not stalled:
            return []
        ConnectorCall.objects.filter(pk__in=stalled).update(updated_at=now)
        for call_id in stalled:
            enqueue_delivery(call_id)
    logger.warning("connector.calls_requeued", extra={"calls": len(stalled)})
    return stalled


def backoff_seconds(run_attempt: int) -> float:
    """Wait before the attempt after ``run_attempt``: doubling, capped."""
    delay = settings.CONNECTOR_RETRY_BACKOFF_SECONDS * 2 ** (run_attempt - 1)
    return float(min(delay, settings.CONNECTOR_RETRY_BACKOFF_MAX_SECONDS))


def attempt_call(call_id: int, run_attempt: int) -> CallStatus | None:
    """Make one attempt of a call and log it; the call's new status, None if not waiting.

    ``run_attempt`` counts the attempts of this delivery (a replay starts again at 1):
    a retryable failure before CONNECTOR_MAX_ATTEMPTS is RETRYING, at it DEAD.
    """
    call = ConnectorCall.objects.select_related("connector").filter(pk=call_id).first()
    if call is None or call.status in FINISHED:
        # A duplicate delivery of a call already settled (acks-late redelivery).
        return None
    connector = call.connector
    call.attempts += 1

    if not connector.is_active or connector.kind != ConnectorKind.OUTBOUND_HTTP:
        exchange = outbound.Exchange(error="The connector is inactive or not outbound HTTP.")
    else:
        config = connector.config
        body = None
        if config["method"] not in ("GET", "DELETE"):
            template = config.get("body_template")
            body = call.context if template is None else fill_template(template, call.context)
        exchange = outbound.send(config, connector.secret, body)

    if exchange.ok:
        status, log_status = CallStatus.SUCCEEDED, LogStatus.SUCCEEDED
    elif exchange.retryable and run_attempt < settings.CONNECTOR_MAX_ATTEMPTS:
        status, log_status = CallStatus.RETRYING, LogStatus.RETRYING
    elif exchange.retryable:
        status, log_status = CallStatus.DEAD, LogStatus.DEAD
    else:
        status, log_status = CallStatus.FAILED, LogStatus.FAILED

    with transaction.atomic():
        write_log(connector, Direction.OUTBOUND, log_status, exchange, call=call)
        call.status, call.last_error = status, exchange.error
        call.finished_at = timezone.now() if status in FINISHED else None
        call.save(update_fields=["status", "attempts", "last_error", "finished_at", "updated_at"])
    logger.info(
        "connector.call_attempt",
        extra={
            "call_id": call.pk,
            "connector_id": connector.pk,
            "tenant_id": connector.tenant_id,
            "attempt": call.attempts,
            "status": status.value,
            "http_status": exchange.http_status,
            "duration_ms": exchange.duration_ms,
        },
    )
    return status


def write_log(
    connector: Connector,
    direction: Direction,
    status: LogStatus,
    exchange: outbound.Exchange,
    *,
    call: ConnectorCall | None = None,
    stored: int | None = None,
) -> ConnectorLog:
    return ConnectorLog.objects.create(
        tenant_id=connector.tenant_id,
        connector=connector,
        call=call,
        direction=direction,
        status=status,
        attempt=call.attempts if call else 0,
        http_status=exchange.http_status,
        duration_ms=exchange.duration_ms,
        request_excerpt=exchange.request_excerpt,
        response_excerpt=exchange.response_excerpt,
        error=exchange.error[:2000],
        stored=stored,
    )


# Mapping bodies to points: webhooks and collector sources.


class UnmappableError(Exception):
    """A body that cannot become points; ``errors`` maps places in it to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(next(iter(errors.items())))
        self.errors = errors


def store_body(connector: Connector, body: Any) -> IngestResult:
    """Map a webhook or collector body to points and store them through the ingest service.

    Raises UnmappableError naming the first place that could not be mapped or stored;
    then nothing of the body was stored.
    """
    points = points_from_body(connector, body, timezone.now())
    try:
        return ingest_points(points)
    except InvalidPointError as error:
        place = f"{error.index}." if error.index is not None and len(points) > 1 else ""
        items_path = connector.config["mapping"].get("items")
        where = f"{items_path}.{place}" if items_path else ""
        raise UnmappableError({f"{where}data": [error.message]}) from None


def points_from_body(connector: Connector, body: Any, now: datetime) -> list[Point]:
    """The points a body maps to, for devices of the connector's tenant only."""
    config = connector.config
    mapping = config["mapping"]
    try:
        items = map_items(body, mapping)
        for item in items:
            apply_transforms(item.data, config.get("transforms", {}), f"{item.path}data.")
    except MappingError as error:
        raise UnmappableError({error.field: [error.message]}) from None

    devices = resolve_devices(connector, items)
    points = []
    for item in items:
        device_path = f"{item.path}{mapping['device']}"
        found = devices.get(item.device_key)
        if found is None:
            lookup = "external id" if mapping["device_by"] == "external_id" else "token"
            shown = item.device_key if lookup == "external id" else "this token"
            raise UnmappableError(
                {device_path: [f"No device of this tenant has {lookup} {shown}."]}
            )
        device_id, is_active = found
        if not is_active:
            raise UnmappableError({device_path: ["The device is inactive."]})
        points.append(
            Point(connector.tenant_id, device_id, item_time(item, mapping, now), item.data)
        )
    return points


def item_time(item: MappedItem, mapping: dict[str, Any], now: datetime) -> datetime:
    """The item's time, parsed and checked as HTTP ingest does; now when unmapped."""
    ts_path = mapping.get("ts")
    raw = RawPoint(item.ts, item.data, "", None if ts_path is None else 0)
    try:
        return to_readings([raw], now)[0].ts
    except serializers.ValidationError as error:
        places = {"ts": f"{item.path}{ts_path}", "data": f"{item.path}data"}
        errors = flatten_errors(error.detail)
        raise UnmappableError(
            {places.get(name, name): messages for name, messages in errors.items()}
        ) from None


def resolve_devices(connector: Connector, items: list[MappedItem]) -> dict[str, tuple[int, bool]]:
    """(device id, active) by the key the mapping read, for the connector's tenant only."""
    keys = {item.device_key for item in items}
    if connector.config["mapping"]["device_by"] == "token":
        by_hash = devices_by_token_hash({hash_device_token(key) for key in keys})
        found = {}
        for key in keys:
            device = by_hash.get(hash_device_token(key))
            if device is not None and device[1] == connector.tenant_id:
                found[key] = (device[0], device[2])
        return found
    rows = Device.objects.for_tenant(connector.tenant_id).filter(external_id__in=keys)
    return {
        str(external_id): (device_id, is_active)
        for external_id, device_id, is_active in rows.values_list("external_id", "id", "is_active")
    }


@dataclass
class WebhookAnswer:
    """The HTTP answer to a webhook call: a status code and a JSON body."""

    status_code: int
    body: dict[str, Any] = field(default_factory=dict)


def receive_webhook(token: str, raw_body: bytes, headers: Mapping[str, str]) -> WebhookAnswer:
    """Verify, map and store one webhook call; every call of a known token is logged."""
    connector = (
        Connector.objects.filter(
            kind=ConnectorKind.WEBHOOK, is_active=True, webhook_token_hash=hash_device_token(token)
        )
        .select_related("tenant")
        .first()
    )
    if connector is None:
        return WebhookAnswer(404, {"detail": "No webhook has this token.", "code": "not_found"})

    exchange = outbound.Exchange(
        request_excerpt=outbound.excerpt(raw_body, connector.secret),
    )
    signature_header = connector.config.get("signature_header", "X-Signature")
    if connector.secret and not outbound.signature_matches(
        connector.secret, raw_body, headers.get(signature_header, "")
    ):
        answer = WebhookAnswer(
            401,
            {
                "detail": f"The {signature_header} header is missing or does not match the body.",
                "code": "bad_signature",
                "errors": {signature_header: ["Missing or wrong signature."]},
            },
        )
        return log_webhook(connector, exchange, answer, LogStatus.REJECTED)

    try:
        result = store_body(connector, orjson.loads(raw_body))
    except orjson.JSONDecodeError:
        errors = {"body": ["Not valid JSON."]}
    except UnmappableError as error:
        errors = error.errors
    else:
        answer = WebhookAnswer(200, {"stored": result.stored, "duplicates": result.duplicates})
        return log_webhook(connector, exchange, answer, LogStatus.SUCCEEDED, result.stored)

    first, messages = next(iter(errors.items()))
    answer = WebhookAnswer(
        400, {"detail": f"{first}: {messages[0]}", "code": "invalid", "errors": errors}
    )
    return log_webhook(connector, exchange, answer, LogStatus.REJECTED)


def log_webhook(
    connector: Connector,
    exchange: outbound.Exchange,
    answer: WebhookAnswer,
    status: LogStatus,
    stored: int | None = None,
) -> WebhookAnswer:
    exchange.http_status = answer.status_code
    exchange.response_excerpt = outbound.excerpt(orjson.dumps(answer.body))
    if status != LogStatus.SUCCEEDED:
        exchange.error = str(answer.body.get("detail", ""))
    write_log(connector, Direction.INBOUND, status, exchange, stored=stored)
    logger.info(
        "connector.webhook",
        extra={
            "connector_id": connector.pk,
            "tenant_id": connector.tenant_id,
            "http_status": answer.status_code,
            "stored": stored,
        },
    )
    return answer


# Collector sources.


def claim_due_collectors(now: datetime | None = None) -> list[int]:
    """Ids of collector sources due for a poll, each moved to its next poll time.

    The move is conditional on the time read, so two beats (or a slow tick overlapping the
    next) never queue the same poll twice.
    """
    now = now or timezone.now()
    due = Connector.objects.filter(kind=ConnectorKind.COLLECTOR, is_active=True).filter(
        Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    )
    claimed = []
    for connector_id, config, next_poll_at in due.values_list("id", "config", "next_poll_at"):
        following = now + timedelta(seconds=config.get("interval_seconds", 60))
        moved = Connector.objects.filter(pk=connector_id, next_poll_at=next_poll_at).update(
            next_poll_at=following
        )
        if moved:
            claimed.append(connector_id)
    return claimed


def poll_source(connector: Connector) -> ConnectorLog:
    """Fetch a collector source once, store what maps to points, and log the poll."""
    exchange = outbound.send(connector.config, connector.secret, None)
    stored = None
    status = LogStatus.FAILED
    if exchange.ok and not exchange.error:
        try:
            result = store_body(connector, orjson.loads(exchange.body))
        except orjson.JSONDecodeError:
            exchange.error = "The response is not valid JSON."
        except UnmappableError as error:
            place, messages = next(iter(error.errors.items()))
            exchange.error = f"{place}: {messages[0]}"
        else:
            status, stored = LogStatus.SUCCEEDED, result.stored

    Connector.objects.filter(pk=connector.pk).update(last_polled_at=timezone.now())
    log = write_log(connector, Direction.POLL, status, exchange, stored=stored)
    logger.info(
        "connector.poll",
        extra={
            "connector_id": connector.pk,
            "tenant_id": connector.tenant_id,
            "status": status.value,
            "http_status": exchange.http_status,
            "stored": stored,
        },
    )
    return log
