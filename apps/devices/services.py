"""Device lifecycle and ingest-token handling."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Max, Q, Value, When
from django.utils import timezone

from apps.audit.models import EventType
from apps.audit.services import record_event, record_event_after_commit
from apps.devices.models import CommandStatus, Device, DeviceCommand, DeviceSession
from apps.tenants.limits import effective_limits
from apps.tenants.models import Tenant
from quantumfleet.database import rows_where_in

logger = logging.getLogger(__name__)

# 32 random bytes: guessing is out of reach, so a fast digest is enough to store it.
TOKEN_BYTES = 32
TOKEN_PREFIX_LENGTH = 8
MINIMUM_IMPORTED_TOKEN_LENGTH = 16


def generate_device_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_device_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def set_device_token(device: Device, token: str) -> None:
    device.token_hash = hash_device_token(token)
    device.token_prefix = token[:TOKEN_PREFIX_LENGTH]
    device.token_rotated_at = timezone.now()


class DeviceQuotaExceededError(Exception):
    """The tenant already has as many devices as its quota allows."""

    def __init__(self, tenant: Tenant, limit: int) -> None:
        super().__init__(f"Tenant {tenant.pk} may have at most {limit} devices.")
        self.limit = limit


def check_device_quota(tenant: Tenant) -> None:
    """Raise DeviceQuotaExceededError if the tenant cannot have one device more.

    Called inside the creating transaction, with the tenant's row locked so that two
    creations at once cannot both take the last place.
    """
    limit = effective_limits(tenant).max_devices
    if not limit:
        return
    Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk").first()
    if Device.objects.filter(tenant=tenant).count() >= limit:
        raise DeviceQuotaExceededError(tenant, limit)


@transaction.atomic
def create_device(
    *, tenant: Tenant, token: str | None = None, actor_id: int | None = None, **fields: Any
) -> tuple[Device, str]:
    """Create a device and return it with its ingest token, which is shown only now.

    ``token`` imports a token already configured in the hardware; by default one is made.
    ``actor_id`` is the user who acts, for the audit trail.
    """
    check_device_quota(tenant)
    token = token or generate_device_token()
    device = Device(tenant=tenant, **fields)
    set_device_token(device, token)
    device.save()
    logger.info("device.created", extra={"device_id": device.pk, "tenant_id": tenant.pk})
    record_device_event(EventType.DEVICE_CREATED, device, actor_id)
    return device, token


@transaction.atomic
def update_device(device: Device, *, actor_id: int | None = None, **changes: Any) -> Device:
    changed = sorted(field for field, value in changes.items() if getattr(device, field) != value)
    for field, value in changes.items():
        setattr(device, field, value)
    device.save()
    if changed:
        record_device_event(EventType.DEVICE_UPDATED, device, actor_id, fields=changed)
    return device


@transaction.atomic
def rotate_device_token(device: Device, *, actor_id: int | None = None) -> str:
    """Give the device a new token; the old one stops working at once."""
    token = generate_device_token()
    set_device_token(device, token)
    device.save(update_fields=["token_hash", "token_prefix", "token_rotated_at", "updated_at"])
    logger.info(
        "device.token_rotated", extra={"device_id": device.pk, "tenant_id": device.tenant_id}
    )
    record_device_event(EventType.DEVICE_TOKEN_ROTATED, device, actor_id)
    return token


@transaction.atomic
def delete_device(device: Device, *, actor_id: int | None = None) -> None:
    logger.info("device.deleted", extra={"device_id": device.pk, "tenant_id": device.tenant_id})
    record_device_event(EventType.DEVICE_DELETED, device, actor_id)
    device.delete()


def record_device_event(
    event_type: str, device: Device, actor_id: int | None, **payload: Any
) -> None:
    """Audit a change of the device once it is committed; never the token itself."""
    record_event_after_commit(
        event_type,
        tenant_id=device.tenant_id,
        user_id=actor_id,
        device_id=device.pk,
        payload={"name": device.name, "external_id": device.external_id, **payload},
    )


def find_device_by_token(token: str) -> Device | None:
    """The device, active or not, whose ingest token this is."""
    if not token:
        return None
    return Device.objects.filter(token_hash=hash_device_token(token)).first()


def devices_by_token_hash(token_hashes: Collection[str]) -> dict[str, tuple[int, int, bool]]:
    """(device id, tenant id, active) by ingest-token digest, in one indexed query.

    Every ingested batch starts here, so it is plain SQL, prepared on PostgreSQL: building
    an ORM query, or planning the statement each time, costs more than the answer. Not
    cached, so that a rotated token or a deactivated device is refused from the next
    message on.
    """
    rows = rows_where_in(
        "SELECT token_hash, id, tenant_id, is_active FROM devices WHERE {}",
        "token_hash",
        token_hashes,
        "text",
    )
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def active_device_ids(device_ids: Collection[int]) -> set[int]:
    """Which of these devices exist and are active, in one indexed query.

    The Teltonika daemon asks this for every batch it writes, so that a device
    deactivated or deleted while connected is refused from its next packet on.
    """
    rows = rows_where_in(
        "SELECT id FROM devices WHERE is_active AND {}", "id", device_ids, "bigint"
    )
    return {row[0] for row in rows}


# Commands to devices. The web process queues; the daemon holding the device's connection
# claims, sends and records the answer. The database is the only channel between them, so
# it works with the processes apart and with several daemons.


def queue_command(
    device: Device, text: str, *, created_by: Any = None, ttl: timedelta | None = None
) -> DeviceCommand:
    """Queue ``text`` for ``device``; it is never sent after ``ttl`` (default from settings)."""
    ttl = ttl or timedelta(seconds=settings.DEVICE_COMMAND_DEFAULT_TTL)
    command = DeviceCommand.objects.create(
        tenant_id=device.tenant_id,
        device=device,
        text=text,
        created_by=created_by,
        expires_at=timezone.now() + ttl,
    )
    logger.info(
        "device.command_queued",
        extra={"device_id": device.pk, "command_id": command.pk, "tenant_id": device.tenant_id},
    )
    return command


def devices_with_queued_commands(now: datetime | None = None) -> set[int]:
    """Ids of devices that have a command waiting to be sent."""
    now = now or timezone.now()
    return set(
        DeviceCommand.objects.filter(status=CommandStatus.QUEUED, expires_at__gt=now)
        .values_list("device_id", flat=True)
        .distinct()
    )


@transaction.atomic
def claim_next_command(device_id: int, sender: str) -> DeviceCommand | None:
    """Mark the device's oldest sendable command as sent by ``sender`` and return it.

    Two daemons never claim the same command: the row is locked (PostgreSQL) or the
    database is (SQLite) until the status changes.
    """
    now = timezone.now()
    command = (
        DeviceCommand.objects.select_for_update(skip_locked=True)
        .filter(device_id=device_id, status=CommandStatus.QUEUED, expires_at__gt=now)
        .order_by("created_at", "id")
        .first()
    )
    if command is None:
        return None
    command.status = CommandStatus.SENT
    command.sent_at = now
    command.sent_by = sender[:200]
    command.save(update_fields=["status", "sent_at", "sent_by"])
    return command


def record_command_answer(command_id: int, response: str) -> bool:
    """Store the device's answer to a sent command; False if it was no longer waiting."""
    updated = DeviceCommand.objects.filter(pk=command_id, status=CommandStatus.SENT).update(
        status=CommandStatus.ANSWERED, response=response, answered_at=timezone.now()
    )
    return updated == 1


def return_command_to_queue(command_id: int) -> None:
    """Put back a claimed command that could not be written to the device."""
    DeviceCommand.objects.filter(pk=command_id, status=CommandStatus.SENT).update(
        status=CommandStatus.QUEUED, sent_at=None, sent_by=""
    )


def expire_commands(now: datetime | None = None) -> tuple[int, int]:
    """Close commands nobody will send or answer any more: (expired, timed out)."""
    now = now or timezone.now()
    expired = DeviceCommand.objects.filter(status=CommandStatus.QUEUED, expires_at__lte=now).update(
        status=CommandStatus.EXPIRED
    )
    answer_deadline = now - timedelta(seconds=settings.DEVICE_COMMAND_ANSWER_TIMEOUT)
    timed_out = DeviceCommand.objects.filter(
        status=CommandStatus.SENT, sent_at__lte=answer_deadline
    ).update(status=CommandStatus.TIMED_OUT)
    return expired, timed_out


def time_out_command(command_id: int) -> None:
    DeviceCommand.objects.filter(pk=command_id, status=CommandStatus.SENT).update(
        status=CommandStatus.TIMED_OUT
    )


# Connections of devices to the daemons.


@transaction.atomic
def open_device_session(device_id: int, tenant_id: int, transport: str, peer: str) -> int:
    """Open a session for a new connection, closing the device's older open ones."""
    now = timezone.now()
    DeviceSession.objects.filter(device_id=device_id, ended_at__isnull=True).update(
        ended_at=now, close_reason="replaced"
    )
    session = DeviceSession.objects.create(
        tenant_id=tenant_id,
        device_id=device_id,
        transport=transport,
        peer=peer[:64],
        started_at=now,
        last_seen=now,
    )
    return session.pk


def latest_session_id() -> int:
    """The id of the newest device session, 0 when there is none."""
    return DeviceSession.objects.aggregate(latest=Max("pk"))["latest"] or 0


def sessions_opened_after(session_id: int, transport: str, limit: int) -> list[tuple[int, int]]:
    """``(session id, device id)`` of ``transport``'s sessions newer than ``session_id``.

    Oldest first and at most ``limit``, so that a caller can read them all in turns by
    passing the last id it saw.
    """
    opened = DeviceSession.objects.filter(pk__gt=session_id, transport=transport).order_by("pk")
    return list(opened.values_list("pk", "device_id")[:limit])


@transaction.atomic
def connect_device(device_id: int, tenant_id: int, transport: str, peer: str) -> int:
    """A daemon accepted the device: open its session and record ``device.connected``.

    Returns the session's id, for ``disconnect_device``.
    """
    session_id = open_device_session(device_id, tenant_id, transport, peer)
    record_event(
        EventType.DEVICE_CONNECTED,
        tenant_id=tenant_id,
        device_id=device_id,
        ip=peer_host(peer),
        payload={"transport": transport, "peer": peer, "session_id": session_id},
        apply_side_effect=False,
    )
    return session_id


@transaction.atomic
def disconnect_device(
    device_id: int,
    tenant_id: int,
    session_id: int,
    *,
    records: int,
    bytes_received: int,
    reason: str,
) -> None:
    """A daemon's connection ended: close its session and record ``device.disconnected``."""
    close_device_session(session_id, records, bytes_received, reason)
    record_event(
        EventType.DEVICE_DISCONNECTED,
        tenant_id=tenant_id,
        device_id=device_id,
        payload={
            "session_id": session_id,
            "reason": reason,
            "records": records,
            "bytes_received": bytes_received,
        },
        apply_side_effect=False,
    )


def peer_host(peer: str) -> str | None:
    """The address of a ``host:port`` peer (IPv6 in brackets or not), None if not one."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]") or None


def touch_device_session(session_id: int, records: int, bytes_received: int) -> None:
    DeviceSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        last_seen=timezone.now(), records=records, bytes_received=bytes_received
    )


def close_device_session(session_id: int, records: int, bytes_received: int, reason: str) -> None:
    """End a connection's session with its totals.

    A session already ended because its device opened a newer one keeps that end and its
    ``replaced`` reason, but still takes the connection's final totals.
    """
    now = timezone.now()
    still_open = Q(ended_at__isnull=True)
    DeviceSession.objects.filter(pk=session_id).update(
        last_seen=Case(When(still_open, then=Value(now)), default=F("last_seen")),
        ended_at=Case(When(still_open, then=Value(now)), default=F("ended_at")),
        close_reason=Case(When(still_open, then=Value(reason[:64])), default=F("close_reason")),
        records=records,
        bytes_received=bytes_received,
    )


# Sessions kept from audit events (POST /audit/events), which name a device, not a session.


@transaction.atomic
def refresh_device_session(device_id: int, tenant_id: int, transport: str, peer: str) -> int:
    """Mark the device's open session as seen now, or open one if none is open."""
    session_id = (
        DeviceSession.objects.select_for_update()
        .filter(device_id=device_id, ended_at__isnull=True)
        .order_by("-started_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    if session_id is None:
        return open_device_session(device_id, tenant_id, transport, peer)
    DeviceSession.objects.filter(pk=session_id).update(last_seen=timezone.now())
    return session_id


def end_device_sessions(device_id: int, reason: str) -> int:
    """Close the device's open sessions; how many were open."""
    now = timezone.now()
    return DeviceSession.objects.filter(device_id=device_id, ended_at__isnull=True).update(
        last_seen=now, ended_at=now, close_reason=reason[:64]
    )


def close_stale_device_sessions(idle: timedelta, now: datetime | None = None) -> int:
    """Close sessions not seen for ``idle``; each ends when it was last seen."""
    deadline = (now or timezone.now()) - idle
    return DeviceSession.objects.filter(ended_at__isnull=True, last_seen__lt=deadline).update(
        ended_at=F("last_seen"), close_reason="timeout"
    )
