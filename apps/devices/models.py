"""Devices: trackers and sensors that send telemetry for one tenant."""

from __future__ import annotations

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
