"""Periodic telemetry housekeeping, run by Celery beat."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.telemetry.ingest_rates import sample_ingest_counts
from apps.telemetry.partitions import run_maintenance

logger = logging.getLogger(__name__)


@shared_task(
    name="telemetry.maintain_partitions",
    # DDL waits for locks; a stuck run must not pile up behind the next one.
    soft_time_limit=15 * 60,
    time_limit=20 * 60,
    autoretry_for=(Exception,),
    retry_backoff=60,
    max_retries=3,
)
def maintain_partitions() -> str:
    """Create upcoming partitions, adopt stray rows and apply retention."""
    return run_maintenance().summary()


@shared_task(name="telemetry.sample_ingest_counts", soft_time_limit=50, time_limit=60)
def take_ingest_sample() -> int:
    """Record the points stored per tenant and protocol, for the ingest rates."""
    return sample_ingest_counts()
