"""Ingest rates per transport, read from samples of the points each device has stored.

The ingest service counts every stored point in the device's latest state
(``DeviceState.point_count``). Once a minute Celery beat sums those counts per tenant and
device protocol into ``IngestCountSample``; a rate over the last hour is the difference
between the newest sample and the one taken an hour before it. Reading the samples costs
a few indexed rows, whatever the size of the telemetry table, and the ingest path does
no extra work.

Known limits, each costing the operator some accuracy: the transport is the device's
declared protocol (a device set to ``http`` that also posts through a webhook counts as
``http``); a device deleted or switched to another protocol within the hour takes its
points out of its old protocol's total, which then reads as a smaller rate (never below
zero); and rates exist only while beat runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Sum
from django.utils import timezone

from apps.devices.models import Device
from apps.telemetry.models import IngestCountSample

logger = logging.getLogger(__name__)

# Samples are kept for a day: enough for the hourly rate and a look back after a break.
INGEST_SAMPLE_RETENTION = timedelta(days=1)
RATE_WINDOW = timedelta(hours=1)


def sample_ingest_counts(now: datetime | None = None) -> int:
    """Record the points stored so far per tenant and protocol; drop old samples.

    Returns how many sample rows were written.
    """
    now = now or timezone.now()
    totals = (
        Device.objects.filter(state__isnull=False)
        .values("tenant_id", "protocol")
        .annotate(points=Sum("state__point_count"), devices=Count("id"))
        .order_by()
    )
    samples = [
        IngestCountSample(
            tenant_id=row["tenant_id"],
            taken_at=now,
            protocol=row["protocol"],
            points_total=row["points"] or 0,
            devices=row["devices"],
        )
        for row in totals
    ]
    IngestCountSample.objects.bulk_create(samples)
    deleted, _ = IngestCountSample.objects.filter(
        taken_at__lt=now - INGEST_SAMPLE_RETENTION
    ).delete()
    logger.info("telemetry.ingest_sampled", extra={"rows": len(samples), "deleted": deleted})
    return len(samples)


@dataclass(frozen=True)
class TransportRate:
    """Points stored through one transport between two samples."""

    protocol: str
    points: int
    devices: int
    per_minute: float


@dataclass(frozen=True)
class IngestRates:
    """Rates per transport over ``since``..``until``; empty when fewer than two samples."""

    since: datetime | None
    until: datetime | None
    rates: list[TransportRate]


def ingest_rates(
    tenant_ids: frozenset[int] | None, now: datetime | None = None, window: timedelta = RATE_WINDOW
) -> IngestRates:
    """Points stored per protocol over about ``window`` up to the newest sample.

    ``tenant_ids`` limits the tenants counted (None: all). The older sample is the newest
    one at least ``window`` old, or the oldest kept when beat has run for less than that.
    """
    now = now or timezone.now()
    samples = IngestCountSample.objects.all()
    if tenant_ids is not None:
        samples = samples.filter(tenant_id__in=tenant_ids)

    # Two indexed look-ups for the two instants, then only their rows.
    newest = samples.filter(taken_at__lte=now).aggregate(at=Max("taken_at"))["at"]
    if newest is None:
        return IngestRates(None, None, [])
    older = (
        samples.filter(taken_at__lte=newest - window).aggregate(at=Max("taken_at"))["at"]
        or samples.filter(taken_at__lt=newest)
        .order_by("taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    if older is None:
        return IngestRates(None, newest, [])

    def totals_at(instant: datetime) -> dict[str, tuple[int, int]]:
        rows = (
            samples.filter(taken_at=instant)
            .values("protocol")
            .annotate(points=Sum("points_total"), devices=Sum("devices"))
            .order_by()
        )
        return {row["protocol"]: (row["points"] or 0, row["devices"] or 0) for row in rows}

    before, after = totals_at(older), totals_at(newest)
    minutes = max((newest - older).total_seconds() / 60, 1 / 60)
    rates = []
    for protocol in sorted(set(before) | set(after)):
        points = max(after.get(protocol, (0, 0))[0] - before.get(protocol, (0, 0))[0], 0)
        devices = after.get(protocol, (0, 0))[1]
        rates.append(TransportRate(protocol, points, devices, round(points / minutes, 1)))
    return IngestRates(older, newest, rates)
