"""Dashboards, their panels and saved queries (the seed's ``/tenants/{id}/dashboards``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apps.dashboards import services
from apps.dashboards.api.filtersets import (
    DashboardFilterSet,
    PanelFilterSet,
    SavedQueryFilterSet,
)
from apps.dashboards.api.serializers import (
    DashboardSerializer,
    PanelDataSerializer,
    PanelSerializer,
    SavedQuerySerializer,
)
from apps.dashboards.configs import PANEL_SCHEMAS, ConfigError, parse_query
from apps.dashboards.data import DeviceRef, panel_data
from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.devices.models import Device
from apps.tenants.scoping import TenantScopedViewMixin


class DashboardContextMixin(TenantScopedViewMixin[Any]):
    """Gives serializers the tenant's devices and saved queries to check references with."""

    tenant_from_header = False
    lookup_value_regex = r"\d+"

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        if hasattr(self, "tenant_access"):
            context["devices"] = self.scoped(Device.objects)
            context["saved_queries"] = self.scoped(SavedQuery.objects)
        return context


class DashboardViewSet(DashboardContextMixin, viewsets.ModelViewSet[Dashboard]):
    """Dashboards of the tenant, each with its panels. Viewers read; managers and admins
    create, change and delete."""

    queryset = Dashboard.objects.prefetch_related("panels")
    serializer_class = DashboardSerializer
    filterset_class = DashboardFilterSet
    ordering_fields = ["id", "name", "created_at", "updated_at"]
    ordering = ["name", "id"]
    lookup_url_kwarg = "dashboard_id"

    def perform_create(self, serializer: BaseSerializer[Dashboard]) -> None:
        serializer.instance = services.create_dashboard(
            tenant=self.tenant, **serializer.validated_data
        )

    def perform_update(self, serializer: BaseSerializer[Dashboard]) -> None:
        assert serializer.instance is not None
        services.update_dashboard(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Dashboard) -> None:
        services.delete_dashboard(instance)


class PanelViewSet(DashboardContextMixin, viewsets.ModelViewSet[Panel]):
    """Panels of one dashboard, in reading order (top to bottom, left to right)."""

    queryset = Panel.objects.select_related("saved_query")
    serializer_class = PanelSerializer
    filterset_class = PanelFilterSet
    ordering_fields = ["id", "x", "y", "title"]
    ordering = ["y", "x", "id"]
    lookup_url_kwarg = "panel_id"

    def dashboard(self) -> Dashboard:
        return get_object_or_404(self.scoped(Dashboard.objects), pk=self.kwargs["dashboard_id"])

    def get_queryset(self) -> QuerySet[Panel]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(dashboard=self.dashboard())

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Another tenant's dashboard is a 404 before the body is read, as for every route.
        self.dashboard()
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: BaseSerializer[Panel]) -> None:
        serializer.instance = services.create_panel(
            dashboard=self.dashboard(), **serializer.validated_data
        )

    def perform_update(self, serializer: BaseSerializer[Panel]) -> None:
        assert serializer.instance is not None
        services.update_panel(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance: Panel) -> None:
        services.delete_panel(instance)

    @extend_schema(
        responses={200: PanelDataSerializer},
        summary="What the panel draws",
        description=(
            "Runs the panel's query (its own or its saved query) through the telemetry "
            "queries and answers in the shape of its type: `series` (timeseries: raw points, "
            "or buckets with an interval), `values` (stat and gauge: one value per device "
            "and data path, reduced by the config's `reduce`, `last` by default), `rows` "
            "(latest_table: each device's newest point), `tracks` (map: positions). The "
            "range is the query's `last` (24 h by default) or `from`/`to`. A panel without "
            "a query is a 400 naming `query`."
        ),
    )
    @action(detail=True, methods=["get"], url_path="data")
    def data(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        panel = self.get_object()
        raw_query = panel.saved_query.query if panel.saved_query else panel.query
        source = "saved_query_id" if panel.saved_query else "query"
        if not raw_query:
            raise exceptions.ValidationError(
                {"query": ["The panel has no query: give it a query or a saved_query_id."]}
            )
        try:
            query = parse_query(raw_query)
        except ConfigError as error:
            raise exceptions.ValidationError({source: [error.message]}) from None
        if PANEL_SCHEMAS[panel.type].needs_keys and not query.keys:
            raise exceptions.ValidationError({source: ["The query names no data paths."]})

        found = {
            device.pk: DeviceRef(device.pk, device.name)
            for device in self.scoped(Device.objects).filter(pk__in=query.device_ids)
        }
        devices = [found[pk] for pk in query.device_ids if pk in found]
        body = panel_data(panel.type, panel.config, query, self.tenant.pk, devices, timezone.now())
        return Response({"panel_id": panel.pk, **body})


class SavedQueryViewSet(DashboardContextMixin, viewsets.ModelViewSet[SavedQuery]):
    """Named telemetry queries of the tenant, shared by panels."""

    queryset = SavedQuery.objects.all()
    serializer_class = SavedQuerySerializer
    filterset_class = SavedQueryFilterSet
    ordering_fields = ["id", "name", "created_at", "updated_at"]
    ordering = ["name", "id"]
    lookup_url_kwarg = "saved_query_id"

    def perform_create(self, serializer: BaseSerializer[SavedQuery]) -> None:
        serializer.instance = services.create_saved_query(
            tenant=self.tenant, **serializer.validated_data
        )

    def perform_update(self, serializer: BaseSerializer[SavedQuery]) -> None:
        assert serializer.instance is not None
        services.update_saved_query(serializer.instance, **serializer.validated_data)

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(description="Panels still use this saved query."),
        }
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            services.delete_saved_query(self.get_object())
        except services.SavedQueryInUseError as error:
            raise SavedQueryInUse(str(error)) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class SavedQueryInUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "saved_query_in_use"
    default_detail = "Panels still use this saved query."
