"""Devices of the request's tenant (the seed's ``/devices`` routes)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apps.devices import services
from apps.devices.api.filtersets import DeviceFilterSet
from apps.devices.api.serializers import (
    DeviceCommandCreateSerializer,
    DeviceCommandSerializer,
    DeviceCreateSerializer,
    DeviceSerializer,
    DeviceWithTokenSerializer,
)
from apps.devices.models import Device, DeviceCommand
from apps.tenants.models import Role
from apps.tenants.scoping import TenantScopedViewMixin


class DeviceQuotaExceeded(exceptions.PermissionDenied):
    default_code = "device_quota_exceeded"

    def __init__(self, limit: int) -> None:
        super().__init__(f"This tenant may have at most {limit} devices; delete one first.")


class DeviceViewSet(TenantScopedViewMixin[Device], viewsets.ModelViewSet[Device]):
    """Devices of the tenant. Viewers read; managers and admins create, change and delete."""

    queryset = Device.objects.all()
    serializer_class = DeviceSerializer
    filterset_class = DeviceFilterSet
    ordering_fields = ["id", "name", "external_id", "created_at", "updated_at"]
    ordering = ["id"]
    lookup_url_kwarg = "device_id"
    lookup_value_regex = r"\d+"

    @extend_schema(
        request=DeviceCreateSerializer,
        responses={
            201: DeviceWithTokenSerializer,
            403: OpenApiResponse(description="The tenant's device quota is full."),
        },
        summary="Create a device",
        description="The response carries the device's ingest token; it is not shown again.",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = DeviceCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        try:
            device, token = services.create_device(
                tenant=self.tenant, actor_id=request.user.pk, **serializer.validated_data
            )
        except services.DeviceQuotaExceededError as error:
            raise DeviceQuotaExceeded(error.limit) from None
        body = DeviceWithTokenSerializer(device, context={"token": token}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: BaseSerializer[Device]) -> None:
        assert serializer.instance is not None
        serializer.instance = services.update_device(
            serializer.instance, actor_id=self.request.user.pk, **serializer.validated_data
        )

    def perform_destroy(self, instance: Device) -> None:
        services.delete_device(instance, actor_id=self.request.user.pk)

    @extend_schema(
        request=None,
        responses={200: DeviceWithTokenSerializer},
        summary="Replace the device's ingest token",
        description=("The old token stops working at once. The new one is in this response only."),
    )
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request: Request, device_id: str) -> Response:
        device = self.get_object()
        token = services.rotate_device_token(device, actor_id=request.user.pk)
        return Response(DeviceWithTokenSerializer(device, context={"token": token}).data)


class DeviceCommandViewSet(
    TenantScopedViewMixin[DeviceCommand],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[DeviceCommand],
):
    """Commands to one device, newest first. Managers and admins only."""

    queryset = DeviceCommand.objects.all()
    serializer_class = DeviceCommandSerializer
    read_role = Role.MANAGER
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_url_kwarg = "command_id"
    lookup_value_regex = r"\d+"

    def device(self) -> Device:
        return get_object_or_404(self.scoped(Device.objects), pk=self.kwargs["device_id"])

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(device=self.device())

    @extend_schema(
        request=DeviceCommandCreateSerializer,
        responses={201: DeviceCommandSerializer},
        summary="Queue a command for the device",
        description=(
            "The daemon holding the device's connection sends it once the device's records "
            "are acknowledged, and stores the answer. A command not sent before it expires "
            "is never sent; one sent but not answered in time is marked `timed_out`."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        device = self.device()
        serializer = DeviceCommandCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ttl_seconds = serializer.validated_data.get("ttl_seconds")
        command = services.queue_command(
            device,
            serializer.validated_data["text"],
            created_by=request.user,
            ttl=timedelta(seconds=ttl_seconds) if ttl_seconds else None,
        )
        return Response(DeviceCommandSerializer(command).data, status=status.HTTP_201_CREATED)
