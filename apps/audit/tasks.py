"""Periodic session housekeeping, run by Celery beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from apps.audit.services import close_stale_user_sessions
from apps.devices.services import close_stale_device_sessions

logger = logging.getLogger(__name__)


@shared_task(name="audit.close_stale_sessions", soft_time_limit=60, time_limit=120)
def close_stale_sessions() -> str:
    """Close device and user sessions whose last sign of life is older than their timeout,
    so that "online" stays true. Each ends at its ``last_seen``."""
    devices = close_stale_device_sessions(timedelta(seconds=settings.DEVICE_SESSION_TIMEOUT))
    users = close_stale_user_sessions(timedelta(seconds=settings.USER_SESSION_TIMEOUT))
    if devices or users:
        logger.info(
            "audit.sessions_timed_out", extra={"device_sessions": devices, "user_sessions": users}
        )
    return f"{devices} device and {users} user session(s) timed out"
