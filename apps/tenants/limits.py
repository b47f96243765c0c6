"""A tenant's effective limits: its own overrides, or the platform's settings."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from apps.tenants.models import Tenant


@dataclass(frozen=True)
class TenantLimits:
    """What a tenant may send and keep; 0 means no limit."""

    device_points_per_minute: int
    tenant_points_per_minute: int
    max_devices: int
    max_stored_points: int


LIMIT_FIELDS = (
    "device_points_per_minute",
    "tenant_points_per_minute",
    "max_devices",
    "max_stored_points",
)


def limits_from_overrides(
    device_points_per_minute: int | None = None,
    tenant_points_per_minute: int | None = None,
    max_devices: int | None = None,
    max_stored_points: int | None = None,
) -> TenantLimits:
    """Each override, or the platform setting where the tenant left it empty."""
    return TenantLimits(
        device_points_per_minute=_either(
            device_points_per_minute, settings.INGEST_DEVICE_POINTS_PER_MINUTE
        ),
        tenant_points_per_minute=_either(
            tenant_points_per_minute, settings.INGEST_TENANT_POINTS_PER_MINUTE
        ),
        max_devices=_either(max_devices, settings.TENANT_MAX_DEVICES),
        max_stored_points=_either(max_stored_points, settings.TENANT_MAX_STORED_POINTS),
    )


def effective_limits(tenant: Tenant) -> TenantLimits:
    return limits_from_overrides(*(getattr(tenant, name) for name in LIMIT_FIELDS))


def limits_by_tenant(tenant_ids: list[int]) -> dict[int, TenantLimits]:
    """Effective limits of these tenants in one query; defaults for ids not found."""
    rows = Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", *LIMIT_FIELDS)
    found = {row[0]: limits_from_overrides(*row[1:]) for row in rows}
    return {tenant_id: found.get(tenant_id) or limits_from_overrides() for tenant_id in tenant_ids}


def _either(override: int | None, default: int) -> int:
    return default if override is None else override
