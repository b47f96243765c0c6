"""Time series of device data, and each device's latest state."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from apps.devices.models import Device
from apps.tenants.models import Tenant, TenantOwnedModel


class Telemetry(TenantOwnedModel):
    """One point: what a device reported at one instant.

    A point is identified by its device and device time: storing the same pair again is
    a duplicate and is dropped. On PostgreSQL the table is range-partitioned by ``ts``
    (see ``apps.telemetry.partitions``); the primary key leads with the tenant because
    every read narrows to one tenant first, then one device, then a time range.
    """

    pk = models.CompositePrimaryKey("tenant_id", "device_id", "ts")
    # No single-column indexes and no foreign-key constraints in the database: the primary
    # key serves tenant and device lookups, and each index or constraint check is paid on
    # every one of millions of inserts (the constraints measured at a fifth of the write
    # rate). Only the ingest service writes here, for devices it has just looked up, and
    # deleting a device or tenant deletes its points first, so no point is left behind.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    # Deleting a device deletes its points through delete_device_telemetry (services),
    # by tenant and device, which the primary key serves; a cascade on device_id alone
    # would scan every partition.
    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    ts = models.DateTimeField(help_text="Device time, UTC.")
    received_at = models.DateTimeField(default=timezone.now, help_text="Server time, UTC.")
    data = models.JSONField()

    class Meta:
        db_table = "telemetry"
        ordering = ["-ts"]
        verbose_name_plural = "telemetry"

    def __str__(self) -> str:
        return f"device {self.device_id} at {self.ts.isoformat()}"


class WholeJSONField(models.JSONField):
    """A JSONField kept in a PostgreSQL json column, read and written whole.

    json keeps the text as written, so a response can embed it without a conversion; psycopg
    parses json columns itself, so values may arrive already decoded.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if isinstance(value, (dict, list)):
            return value
        return super().from_db_value(value, expression, connection)


class DeviceState(TenantOwnedModel):
    """The latest point of a device, kept in step with every ingest.

    It only moves forward: a point older than ``last_ts`` (history uploaded late) is
    stored in the time series but leaves the state alone. The position is the latest
    point that carried one, which may be older than ``last_ts``.
    """

    device = models.OneToOneField(
        Device, on_delete=models.CASCADE, primary_key=True, related_name="state"
    )
    last_ts = models.DateTimeField(help_text="Device time of the newest point.")
    last_received_at = models.DateTimeField(help_text="Server time the newest point arrived.")
    # json, not jsonb, on PostgreSQL (see the migration): the fleet view embeds a thousand
    # of these per request, and jsonb would be converted back to text each time.
    last_data = WholeJSONField()
    position_ts = models.DateTimeField(null=True, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    point_count = models.BigIntegerField(default=0, help_text="Points stored, duplicates excluded.")
    updated_at = models.DateTimeField(
        default=timezone.now, help_text="Last time a point was stored."
    )

    class Meta:
        # No index on the state columns: each batch updates these rows, and an update that
        # touches no indexed column can stay on its page (a HOT update) without index churn.
        db_table = "device_state"

    def __str__(self) -> str:
        return f"state of device {self.device_id}"


class IngestCountSample(TenantOwnedModel):
    """Points stored so far by the devices of one tenant and protocol, at one instant.

    Celery beat takes a sample every minute from the latest-state table, which the ingest
    service already keeps in step; the fleet overview reads ingest rates per transport as
    the difference between two samples, so nothing is added to the ingest path. Samples
    older than INGEST_SAMPLE_RETENTION (see ingest_rates) are deleted as new ones come.
    """

    taken_at = models.DateTimeField()
    protocol = models.CharField(max_length=16, help_text="The devices' declared protocol.")
    points_total = models.BigIntegerField(help_text="Sum of the devices' stored points.")
    devices = models.IntegerField(help_text="Devices of this protocol that have any point.")

    class Meta:
        db_table = "telemetry_ingest_samples"
        ordering = ["-taken_at", "tenant_id", "protocol"]
        indexes = [models.Index(fields=["taken_at"], name="ingest_samples_taken_at")]

    def __str__(self) -> str:
        return f"{self.protocol} of tenant {self.tenant_id} at {self.taken_at:%Y-%m-%d %H:%M}"
