"""Device lifecycle and ingest-token handling."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Collection
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.devices.models import Device
from apps.tenants.models import Tenant

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


@transaction.atomic
def create_device(*, tenant: Tenant, token: str | None = None, **fields: Any) -> tuple[Device, str]:
    """Create a device and return it with its ingest token, which is shown only now.

    ``token`` imports a token already configured in the hardware; by default one is made.
    """
    token = token or generate_device_token()
    device = Device(tenant=tenant, **fields)
    set_device_token(device, token)
    device.save()
    logger.info("device.created", extra={"device_id": device.pk, "tenant_id": tenant.pk})
    return device, token


@transaction.atomic
def update_device(device: Device, **changes: Any) -> Device:
    for field, value in changes.items():
        setattr(device, field, value)
    device.save()
    return device


@transaction.atomic
def rotate_device_token(device: Device) -> str:
    """Give the device a new token; the old one stops working at once."""
    token = generate_device_token()
    set_device_token(device, token)
    device.save(update_fields=["token_hash", "token_prefix", "token_rotated_at", "updated_at"])
    logger.info(
        "device.token_rotated", extra={"device_id": device.pk, "tenant_id": device.tenant_id}
    )
    return token


@transaction.atomic
def delete_device(device: Device) -> None:
    logger.info("device.deleted", extra={"device_id": device.pk, "tenant_id": device.tenant_id})
    device.delete()


def find_device_by_token(token: str) -> Device | None:
    """The device, active or not, whose ingest token this is."""
    if not token:
        return None
    return Device.objects.filter(token_hash=hash_device_token(token)).first()


def devices_by_token_hash(token_hashes: Collection[str]) -> dict[str, tuple[int, int, bool]]:
    """(device id, tenant id, active) by ingest-token digest, in one indexed query.

    Every ingested message starts here, so it is plain SQL: building an ORM query costs
    more than the database's answer. Not cached, so that a rotated token or a deactivated
    device is refused from the next message on.
    """
    if not token_hashes:
        return {}
    hashes = list(token_hashes)
    if connection.vendor == "postgresql":
        # One array literal: psycopg would adapt a list element by element in Python.
        condition, params = "token_hash = ANY(%s::text[])", ["{" + ",".join(hashes) + "}"]
    else:
        condition, params = f"token_hash IN ({', '.join(['%s'] * len(hashes))})", hashes
    with connection.cursor() as cursor:
        # The condition is one of the two written above; the digests are bound parameters.
        cursor.execute(
            f"SELECT token_hash, id, tenant_id, is_active FROM devices WHERE {condition}",  # noqa: S608
            params,
        )
        return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}
