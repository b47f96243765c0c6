"""Audit events and user sessions.

Device sessions are ``apps.devices.models.DeviceSession`` (table ``device_sessions``),
shared with the Teltonika daemon: device events act on that table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.devices.models import Device
from apps.tenants.models import Tenant, TenantOwnedModel, TenantQuerySet


class EventType(models.TextChoices):
    """Event types the platform knows. Others are stored as they come, without side effects."""

    DEVICE_CONNECTED = "device.connected", "Device connected (opens a device session)"
    DEVICE_KEEPALIVE = "device.keepalive", "Device keepalive (refreshes its session)"
    DEVICE_MESSAGE = "device.message", "Device message (refreshes its session)"
    DEVICE_DISCONNECTED = "device.disconnected", "Device disconnected (closes its session)"
    USER_LOGIN = "user.login", "User logged in (opens a user session)"
    USER_KEEPALIVE = "user.keepalive", "User keepalive (refreshes their session)"
    USER_LOGOUT = "user.logout", "User logged out (closes their session)"
    USER_LOGIN_FAILED = "user.login_failed", "Login refused"
    USER_LOGIN_THROTTLED = "user.login_throttled", "Logins blocked after too many failures"
    ROLE_GRANTED = "role.granted", "Role granted"
    ROLE_REVOKED = "role.revoked", "Role revoked"
    DEVICE_CREATED = "device.created", "Device created"
    DEVICE_UPDATED = "device.updated", "Device changed"
    DEVICE_DELETED = "device.deleted", "Device deleted"
    DEVICE_TOKEN_ROTATED = "device.token_rotated", "Device token rotated"
    # Emitted by the connectors app through record_event_after_commit when it lands.
    CONNECTOR_CREATED = "connector.created", "Connector created"
    CONNECTOR_UPDATED = "connector.updated", "Connector changed"
    CONNECTOR_DELETED = "connector.deleted", "Connector deleted"


class AuditEvent(models.Model):
    """Something that happened, who or what did it, and from where. Never changed.

    ``user`` and ``device`` keep their ids after the user or device is deleted (no
    database constraint, no cascade), so the trail of a deleted device stays readable.
    ``tenant`` is empty for events that belong to no tenant (a refused login with an
    unknown email) and for events of a deleted tenant; only operators see those.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    type = models.CharField(max_length=64)
    ts = models.DateTimeField(help_text="When it happened, as reported.")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was recorded.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user who acted, if a user did.",
    )
    device = models.ForeignKey(
        Device,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        help_text="The device the event is about or comes from.",
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "audit_events"
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["tenant", "ts"], name="audit_events_tenant_ts"),
            models.Index(fields=["tenant", "device", "ts"], name="audit_events_device"),
            models.Index(fields=["tenant", "user", "ts"], name="audit_events_user"),
            models.Index(fields=["tenant", "type", "ts"], name="audit_events_type"),
        ]

    def __str__(self) -> str:
        return f"{self.type} at {self.ts:%Y-%m-%d %H:%M:%S}"


class UserSession(TenantOwnedModel):
    """A user's presence in a tenant, from login to logout or timeout."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        related_name="+",
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "user_sessions"
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "user", "started_at"], name="user_sessions_list"),
            models.Index(
                fields=["user"],
                name="user_sessions_open",
                condition=models.Q(ended_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None
