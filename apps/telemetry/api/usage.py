"""``GET /tenants/{tenant_id}/limits``: a tenant's ingest limits, quotas and their use."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.devices.models import Device
from apps.telemetry import limits
from apps.tenants.limits import effective_limits
from apps.tenants.models import Role
from apps.tenants.scoping import TenantScopedViewMixin


class LimitsSerializer(serializers.Serializer[Any]):
    device_points_per_minute = serializers.IntegerField(help_text="0: no limit.")
    tenant_points_per_minute = serializers.IntegerField(help_text="0: no limit.")
    max_devices = serializers.IntegerField(help_text="0: no limit.")
    max_stored_points = serializers.IntegerField(help_text="0: no limit.")


class UsageSerializer(serializers.Serializer[Any]):
    devices = serializers.IntegerField()
    stored_points = serializers.IntegerField()
    tenant_points_this_minute = serializers.IntegerField(
        allow_null=True, help_text="Null when the shared counters cannot be reached."
    )


class RefusedSerializer(serializers.Serializer[Any]):
    device_rate = serializers.IntegerField(help_text="Points over a device's rate limit.")
    tenant_rate = serializers.IntegerField(help_text="Points over the tenant's rate limit.")
    stored_points_quota = serializers.IntegerField(help_text="Points over the quota.")
    api_user_rate = serializers.IntegerField(
        help_text="API requests of the tenant's users refused by the per-user throttle."
    )


class TenantLimitsSerializer(serializers.Serializer[Any]):
    enforced = serializers.BooleanField(help_text="False where the platform turned limits off.")
    limits = LimitsSerializer()
    usage = UsageSerializer()
    refused_last_hour = RefusedSerializer(
        allow_null=True, help_text="Points refused per reason; null when the counters are away."
    )


class TenantLimitsView(TenantScopedViewMixin[Device]):
    """What the tenant may send and keep, how much of it is used, and what was refused."""

    queryset = Device.objects.all()
    read_role = Role.ADMIN
    tenant_from_header = False
    pagination_class = None

    @extend_schema(
        responses=TenantLimitsSerializer,
        summary="A tenant's ingest limits and quotas, and their use",
        description=(
            "Per-device and per-tenant points per minute, the device and stored-point "
            "quotas (0: no limit), what is used of them, and the points refused over the "
            "last hour by reason. Tenant admins only."
        ),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        limiter = limits.limiter()
        tenant = self.tenant
        refused = limiter.refused_last_hour(tenant.pk)
        body = {
            "enforced": limits.enforced(),
            "limits": effective_limits(tenant).__dict__,
            "usage": {
                "devices": self.get_queryset().count(),
                "stored_points": limits.stored_points_by_tenant([tenant.pk])[tenant.pk],
                "tenant_points_this_minute": limiter.tenant_points_this_minute(tenant.pk),
            },
            "refused_last_hour": refused or None,
        }
        return Response(TenantLimitsSerializer(body).data)
