"""Audit events and sessions of the request's tenant (the seed's ``/audit`` routes)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit import services
from apps.audit.api.filtersets import (
    AuditEventFilterSet,
    DeviceSessionFilterSet,
    UserSessionFilterSet,
)
from apps.audit.api.serializers import (
    AuditEventCreateSerializer,
    AuditEventSerializer,
    DeviceSessionSerializer,
    UserSessionSerializer,
)
from apps.audit.middleware import request_origin
from apps.audit.models import AuditEvent, UserSession
from apps.devices.models import Device, DeviceSession
from apps.tenants.models import Role, UserRole
from apps.tenants.scoping import TenantScopedViewMixin


class AuditEventViewSet(
    TenantScopedViewMixin[AuditEvent],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[AuditEvent],
):
    """The tenant's audit trail, newest first. Append-only: events are never changed.

    Managers and admins read and record events.
    """

    # Prefetched, not joined: a filter on device_id would turn the join into an inner one
    # and hide the events of deleted devices.
    queryset = AuditEvent.objects.prefetch_related("user", "device")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    read_role = Role.MANAGER
    ordering_fields = ["ts", "id"]
    ordering = ["-ts", "-id"]
    lookup_url_kwarg = "event_id"
    lookup_value_regex = r"\d+"

    @extend_schema(
        request=AuditEventCreateSerializer,
        responses={201: AuditEventSerializer},
        summary="Record an event",
        description=(
            "Stores the event in the caller's tenant and keeps sessions: `device.connected` "
            "opens a device session (closing the device's older open ones), "
            "`device.keepalive` and `device.message` refresh its `last_seen` (opening one "
            "if none is open), `device.disconnected` closes it; `user.login` opens a user "
            "session, `user.keepalive` refreshes it (or opens one), `user.logout` closes "
            "it. Device events need `device_id`, user events `user_id`. Other types are "
            "stored without side effects. `ip` and `user_agent` default to the caller's."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = AuditEventCreateSerializer(
            data=request.data,
            context={
                "members": self.scoped(UserRole.objects),
                "devices": self.scoped(Device.objects),
            },
        )
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        origin = request_origin()
        event = services.record_event(
            values["type"],
            tenant_id=self.tenant.pk,
            user_id=values.get("user_id"),
            device_id=values.get("device_id"),
            ip=values.get("ip", origin.ip),
            user_agent=values.get("user_agent", origin.user_agent),
            payload=values.get("payload"),
            ts=values.get("ts"),
        )
        event = self.get_queryset().get(pk=event.pk)
        return Response(AuditEventSerializer(event).data, status=status.HTTP_201_CREATED)


class DeviceSessionViewSet(
    TenantScopedViewMixin[DeviceSession],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[DeviceSession],
):
    """Connections of the tenant's devices, open and closed, newest first. Viewers read.

    Sessions come from the Teltonika daemon and from device events.
    """

    queryset = DeviceSession.objects.all()
    serializer_class = DeviceSessionSerializer
    filterset_class = DeviceSessionFilterSet
    ordering_fields = ["started_at", "last_seen", "id"]
    ordering = ["-started_at", "-id"]
    lookup_url_kwarg = "session_id"
    lookup_value_regex = r"\d+"


class UserSessionViewSet(
    TenantScopedViewMixin[UserSession],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[UserSession],
):
    """Sessions of the tenant's users, open and closed, newest first. Managers and admins."""

    queryset = UserSession.objects.all()
    serializer_class = UserSessionSerializer
    filterset_class = UserSessionFilterSet
    read_role = Role.MANAGER
    ordering_fields = ["started_at", "last_seen", "id"]
    ordering = ["-started_at", "-id"]
    lookup_url_kwarg = "session_id"
    lookup_value_regex = r"\d+"
