"""Devices: trackers and sensors that send telemetry for one tenant."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.tenants.models import TenantOwnedModel


class DeviceProtocol(models.TextChoices):
    """How a device delivers its data."""

    HTTP = "http", "HTTP"
    MQTT = "mqtt", "MQTT"
    TELTONIKA = "teltonika", "Teltonika TCP/UDP"
    WEBHOOK = "webhook", "Webhook"
    COLLECTOR = "collector", "Polled by the collector"


class Device(TenantOwnedModel):
    """A device of one tenant.

    Its ingest token is never stored: only a SHA-256 digest (for lookup) and the first
    characters (so people can tell tokens apart). The token is shown once, when it is
    created or rotated.
    """

    name = models.CharField(max_length=200)
    external_id = models.CharField(
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text="Unique platform-wide: the IMEI for Teltonika devices.",
    )
    model = models.CharField(max_length=64, blank=True, help_text="Hardware model, e.g. FMC650.")
    protocol = models.CharField(
        max_length=16, choices=DeviceProtocol.choices, default=DeviceProtocol.HTTP
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive devices are refused by every ingest path."
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=12, editable=False, help_text="First characters of the ingest token."
    )
    token_rotated_at = models.DateTimeField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "devices"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["tenant", "name"], name="devices_tenant_name"),
            models.Index(fields=["tenant", "is_active"], name="devices_tenant_active"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_token(self) -> str:
        return f"{self.token_prefix}…"


class CommandStatus(models.TextChoices):
    """Where a command to a device stands."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent, waiting for the answer"
    ANSWERED = "answered", "Answered"
    TIMED_OUT = "timed_out", "Sent, never answered"
    EXPIRED = "expired", "Expired before it could be sent"


class DeviceCommand(TenantOwnedModel):
    """A text command for a device (Teltonika Codec 12), and its answer.

    The web process queues it; the daemon holding the device's connection claims it, sends
    it once the device's records are acknowledged, and stores the answer.
    """

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    text = models.CharField(max_length=512)
    status = models.CharField(
        max_length=16, choices=CommandStatus.choices, default=CommandStatus.QUEUED
    )
    response = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Never sent after this time.")
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.CharField(
        max_length=200, blank=True, help_text="The daemon (host and process) that sent it."
    )

    class Meta:
        db_table = "device_commands"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "device", "created_at"], name="device_commands_list"),
            # Daemons look for waiting commands every second; they are few at any time.
            models.Index(
                fields=["status", "device"],
                name="device_commands_waiting",
                condition=models.Q(status__in=["queued", "sent"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.text} → {self.device_id} ({self.status})"


class DeviceSession(TenantOwnedModel):
    """One connection of a device to a daemon, from handshake to close."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sessions")
    transport = models.CharField(max_length=32)
    peer = models.CharField(max_length=64, blank=True, help_text="Remote address and port.")
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    records = models.PositiveBigIntegerField(default=0)
    bytes_received = models.PositiveBigIntegerField(default=0)
    close_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "device_sessions"
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "device", "started_at"], name="device_sessions_list"),
            models.Index(
                fields=["device"],
                name="device_sessions_open",
                condition=models.Q(ended_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} {self.transport} {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None
