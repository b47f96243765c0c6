"""Tenants, role membership, and the base for every tenant-owned model."""

from __future__ import annotations

from typing import TypeVar

from django.conf import settings
from django.db import models

_Owned = TypeVar("_Owned", bound=models.Model)


class TenantQuerySet(models.QuerySet[_Owned]):
    """Queryset of tenant-owned rows; ``for_tenant`` is the only way views reach them."""

    def for_tenant(self, tenant: Tenant | int) -> TenantQuerySet[_Owned]:
        tenant_id = tenant if isinstance(tenant, int) else tenant.pk
        return self.filter(tenant_id=tenant_id)


class Tenant(models.Model):
    """An organisation whose devices, data and configuration are isolated from others."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    telemetry_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Days of telemetry to keep for this tenant; empty follows the platform setting "
            "(TELEMETRY_RETENTION_DAYS), 0 keeps it forever."
        ),
    )
    # Limits that protect the platform. Empty follows the platform setting named in the
    # help text; 0 means no limit for this tenant.
    device_points_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Points one device may send per minute (INGEST_DEVICE_POINTS_PER_MINUTE).",
    )
    tenant_points_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Points all of the tenant's devices may send per minute together "
            "(INGEST_TENANT_POINTS_PER_MINUTE)."
        ),
    )
    max_devices = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most devices the tenant may have (TENANT_MAX_DEVICES)."
    )
    max_stored_points = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Most telemetry points the tenant may keep (TENANT_MAX_STORED_POINTS).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tenants"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    """A user's role in one tenant. Each role can do everything the lower ones can."""

    VIEWER = "viewer", "Viewer"
    MANAGER = "manager", "Manager"
    ADMIN = "admin", "Admin"

    @property
    def rank(self) -> int:
        return ROLE_RANKS[self]

    def includes(self, required: Role) -> bool:
        """Whether this role grants at least what ``required`` grants."""
        return self.rank >= required.rank


# viewer < manager < admin, as in the seed.
ROLE_RANKS = {Role.VIEWER: 1, Role.MANAGER: 2, Role.ADMIN: 3}


class UserRole(models.Model):
    """Membership: the one role a user holds in a tenant (the seed's ``user_roles``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_roles"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="user_roles")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "user_roles"
        ordering = ["tenant_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="user_roles_one_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="user_roles_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "role"], name="user_roles_tenant_role")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.tenant}"


class TenantOwnedModel(models.Model):
    """Base for every model that belongs to one tenant.

    The indexed ``tenant`` key comes first in every index of the subclasses, because every
    query they serve starts by narrowing to one tenant.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="%(app_label)s_%(class)s_set",
        related_query_name="%(app_label)s_%(class)s",
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
