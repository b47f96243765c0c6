"""Periodic device housekeeping, run by Celery beat."""

from __future__ import annotations

from celery import shared_task

from apps.devices.services import expire_commands


@shared_task(name="devices.expire_commands", soft_time_limit=60, time_limit=120)
def expire_device_commands() -> str:
    """Close commands past their expiry and sent ones never answered."""
    expired, timed_out = expire_commands()
    return f"{expired} expired, {timed_out} timed out"
