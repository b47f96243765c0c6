"""Recording audit events, and the sessions they open, refresh and close.

``record_event`` stores one event and applies its side effect in one transaction:

- ``device.connected`` opens a device session, closing the device's older open ones;
  ``device.keepalive`` and ``device.message`` refresh its ``last_seen`` (and open one if
  none is open: the device is evidently connected again); ``device.disconnected`` closes it.
- ``user.login`` opens a user session in the event's tenant, closing the user's older open
  one there; ``user.keepalive`` refreshes it (or opens one); ``user.logout`` closes it.

Other types are stored without side effects. Services of other apps call
``record_event_after_commit`` (or ``record_user_event_after_commit``), so that an event
is written only once the change it records is committed, and a failure to write it never
undoes or fails that change. Connectors emit ``connector.created``, ``connector.updated``
and ``connector.deleted`` the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.middleware import MAX_USER_AGENT, request_origin, valid_ip
from apps.audit.models import AuditEvent, EventType, UserSession
from apps.tenants.models import UserRole

logger = logging.getLogger(__name__)

DEFAULT_TRANSPORT = "api"


@transaction.atomic
def record_event(
    event_type: str,
    *,
    tenant_id: int | None,
    user_id: int | None = None,
    device_id: int | None = None,
    ip: str | None = None,
    user_agent: str = "",
    payload: dict[str, Any] | None = None,
    ts: datetime | None = None,
    apply_side_effect: bool = True,
) -> AuditEvent:
    """Store an event and apply its session side effect (see the module docstring).

    An event without a tenant, or without the device or user its side effect acts on, is
    stored without side effect; so is one whose caller has already changed the session
    itself (``apply_side_effect=False``), as the ingest daemons do.
    """
    event = AuditEvent.objects.create(
        tenant_id=tenant_id,
        type=event_type,
        ts=ts or timezone.now(),
        user_id=user_id,
        device_id=device_id,
        ip=valid_ip(ip),
        user_agent=user_agent[:MAX_USER_AGENT],
        payload=payload or {},
    )
    effect = SIDE_EFFECTS.get(event_type) if apply_side_effect else None
    if effect is not None and tenant_id is not None:
        effect(event)
    return event


def record_event_after_commit(
    event_type: str,
    *,
    tenant_id: int | None,
    user_id: int | None = None,
    device_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """``record_event`` once the current transaction commits (at once outside one).

    The address and user agent are the current request's, if any.
    """
    origin = request_origin()

    def write() -> None:
        record_event(
            event_type,
            tenant_id=tenant_id,
            user_id=user_id,
            device_id=device_id,
            ip=origin.ip,
            user_agent=origin.user_agent,
            payload=payload,
        )

    after_commit(event_type, write)


def record_user_event_after_commit(
    event_type: str, *, user_id: int | None, payload: dict[str, Any] | None = None
) -> None:
    """Record a user's own event (login, logout) in each tenant the user belongs to.

    Each tenant's trail is then complete and isolated from the others. A user of no
    tenant, or no known user, gets one event without tenant, seen by operators only.
    """
    origin = request_origin()

    def write() -> None:
        tenant_ids: list[int | None] = []
        if user_id is not None:
            tenant_ids += UserRole.objects.filter(user_id=user_id).values_list(
                "tenant_id", flat=True
            )
        for tenant_id in tenant_ids or [None]:
            record_event(
                event_type,
                tenant_id=tenant_id,
                user_id=user_id,
                ip=origin.ip,
                user_agent=origin.user_agent,
                payload=payload,
            )

    after_commit(event_type, write)


def after_commit(event_type: str, write: Callable[[], None]) -> None:
    def run() -> None:
        # The recorded change is already committed: losing its event is logged, not raised.
        try:
            write()
        except Exception:
            logger.exception("audit.record_failed", extra={"event_type": event_type})

    transaction.on_commit(run)


# Side effects on sessions.


def payload_text(event: AuditEvent, key: str, default: str, max_length: int) -> str:
    value = event.payload.get(key) if isinstance(event.payload, dict) else None
    return value[:max_length] if isinstance(value, str) and value else default


def device_connected(event: AuditEvent) -> None:
    from apps.devices import services as devices  # devices' services record events too

    if event.device_id is None or event.tenant_id is None:
        return
    devices.open_device_session(
        event.device_id,
        event.tenant_id,
        payload_text(event, "transport", DEFAULT_TRANSPORT, 32),
        payload_text(event, "peer", event.ip or "", 64),
    )


def device_seen(event: AuditEvent) -> None:
    from apps.devices import services as devices

    if event.device_id is None or event.tenant_id is None:
        return
    devices.refresh_device_session(
        event.device_id,
        event.tenant_id,
        payload_text(event, "transport", DEFAULT_TRANSPORT, 32),
        payload_text(event, "peer", event.ip or "", 64),
    )


def device_disconnected(event: AuditEvent) -> None:
    from apps.devices import services as devices

    if event.device_id is None:
        return
    devices.end_device_sessions(event.device_id, payload_text(event, "reason", "disconnected", 64))


def user_login(event: AuditEvent) -> None:
    if event.user_id is None or event.tenant_id is None:
        return
    open_user_session(event.tenant_id, event.user_id, event.ip, event.user_agent)


def user_seen(event: AuditEvent) -> None:
    if event.user_id is None or event.tenant_id is None:
        return
    refresh_user_session(event.tenant_id, event.user_id, event.ip, event.user_agent)


def user_logout(event: AuditEvent) -> None:
    if event.user_id is None or event.tenant_id is None:
        return
    close_user_sessions(event.tenant_id, event.user_id, payload_text(event, "reason", "logout", 64))


SIDE_EFFECTS: dict[str, Callable[[AuditEvent], None]] = {
    EventType.DEVICE_CONNECTED: device_connected,
    EventType.DEVICE_KEEPALIVE: device_seen,
    EventType.DEVICE_MESSAGE: device_seen,
    EventType.DEVICE_DISCONNECTED: device_disconnected,
    EventType.USER_LOGIN: user_login,
    EventType.USER_KEEPALIVE: user_seen,
    EventType.USER_LOGOUT: user_logout,
}
# The actor each side effect needs, for the API to ask for it.
SIDE_EFFECT_ACTORS = {
    **{name: "device_id" for name in SIDE_EFFECTS if name.startswith("device.")},
    **{name: "user_id" for name in SIDE_EFFECTS if name.startswith("user.")},
}


# User sessions. One open session per user and tenant: a JWT names no session that a
# later keepalive or logout could refer to.


@transaction.atomic
def open_user_session(tenant_id: int, user_id: int, ip: str | None, user_agent: str) -> UserSession:
    """Open a session for the user in the tenant, closing their older open one there."""
    now = timezone.now()
    close_user_sessions(tenant_id, user_id, "replaced")
    return UserSession.objects.create(
        tenant_id=tenant_id,
        user_id=user_id,
        ip=valid_ip(ip),
        user_agent=user_agent[:MAX_USER_AGENT],
        started_at=now,
        last_seen=now,
    )


@transaction.atomic
def refresh_user_session(
    tenant_id: int, user_id: int, ip: str | None, user_agent: str
) -> UserSession:
    """Mark the user's open session as seen now, or open one if none is open."""
    session = (
        UserSession.objects.select_for_update()
        .filter(tenant_id=tenant_id, user_id=user_id, ended_at__isnull=True)
        .order_by("-started_at", "-id")
        .first()
    )
    if session is None:
        return open_user_session(tenant_id, user_id, ip, user_agent)
    session.last_seen = timezone.now()
    session.save(update_fields=["last_seen"])
    return session


def close_user_sessions(tenant_id: int, user_id: int, reason: str) -> int:
    """Close the user's open sessions in the tenant; how many were open."""
    now = timezone.now()
    return UserSession.objects.filter(
        tenant_id=tenant_id, user_id=user_id, ended_at__isnull=True
    ).update(last_seen=now, ended_at=now, close_reason=reason[:64])


def close_stale_user_sessions(idle: timedelta, now: datetime | None = None) -> int:
    """Close sessions not seen for ``idle``; each ends when it was last seen."""
    deadline = (now or timezone.now()) - idle
    return UserSession.objects.filter(ended_at__isnull=True, last_seen__lt=deadline).update(
        ended_at=F("last_seen"), close_reason="timeout"
    )
