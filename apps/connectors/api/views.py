"""Connectors, their calls and logs, rules (tenant-scoped), and the public webhook route."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from apps.connectors import services
from apps.connectors.api.filtersets import (
    ConnectorCallFilterSet,
    ConnectorFilterSet,
    ConnectorLogFilterSet,
    RuleFilterSet,
)
from apps.connectors.api.serializers import (
    ConnectorCallRequestSerializer,
    ConnectorCallSerializer,
    ConnectorLogSerializer,
    ConnectorSerializer,
    ConnectorWithTokenSerializer,
    QueuedCallSerializer,
    RuleSerializer,
)
from apps.connectors.configs import ConfigError
from apps.connectors.models import (
    Connector,
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Rule,
)
from apps.connectors.rules import forget_rules_of
from apps.devices.models import Device
from apps.tenants.scoping import TenantScopedViewMixin


class ConnectorViewSet(TenantScopedViewMixin[Connector], viewsets.ModelViewSet[Connector]):
    """Connectors of the tenant. Viewers read (never a secret); managers and admins write."""

    queryset = Connector.objects.all()
    serializer_class = ConnectorSerializer
    filterset_class = ConnectorFilterSet
    ordering_fields = ["id", "name", "kind", "created_at", "updated_at"]
    ordering = ["id"]
    lookup_url_kwarg = "connector_id"
    lookup_value_regex = r"\d+"

    @extend_schema(
        request=ConnectorSerializer,
        responses={201: ConnectorWithTokenSerializer, 200: ConnectorWithTokenSerializer},
        summary="Create a connector, or update the one with this name",
        description=(
            "As in the original API: a connector with the same name in the tenant is updated "
            "(200), otherwise one is created (201). A new webhook's token is in this response "
            "only."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        name = fields.pop("name")
        connector, created, token = call_service(
            services.upsert_connector, self.tenant, name=name, user=request.user, **fields
        )
        body = ConnectorWithTokenSerializer(connector, context={"webhook_token": token}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    # Set by perform_update when a connector becomes a webhook; a view serves one request.
    issued_token: str | None = None

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().update(request, *args, **kwargs)
        if self.issued_token:
            # A connector that just became a webhook: its token is shown this once.
            response.data["webhook_token"] = self.issued_token
        return response

    def perform_update(self, serializer: BaseSerializer[Connector]) -> None:
        connector = serializer.instance
        assert connector is not None
        fields = dict(serializer.validated_data)
        if not serializer.partial:
            # PUT replaces: what is left out returns to its default.
            fields = {"is_active": True, "config": {}, **fields}
        serializer.instance, self.issued_token = call_service(
            services.save_connector,
            self.tenant,
            instance=connector,
            user=self.request.user,
            name=fields.get("name", connector.name),
            kind=fields.get("kind", connector.kind),
            config=fields.get("config", connector.config),
            secret=fields.get("secret"),
            is_active=fields.get("is_active", connector.is_active),
        )

    def perform_destroy(self, instance: Connector) -> None:
        services.delete_connector(instance, user=self.request.user)
        forget_rules_of(self.tenant.pk)

    @extend_schema(
        request=ConnectorCallRequestSerializer,
        responses={202: QueuedCallSerializer},
        summary="Queue an outbound call",
        description=(
            "Answers at once with the call and its first log row; a worker makes the call, "
            "retrying timeouts, connection errors and 5xx with exponential backoff. Follow it "
            "in /connectors/{connector_id}/logs."
        ),
    )
    @action(detail=True, methods=["post"])
    def call(self, request: Request, connector_id: str) -> Response:
        connector = self.get_object()
        if connector.kind != ConnectorKind.OUTBOUND_HTTP:
            raise serializers.ValidationError({"kind": ["Only outbound HTTP connectors call out."]})
        if not connector.is_active:
            raise serializers.ValidationError({"is_active": ["The connector is inactive."]})
        serializer = ConnectorCallRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = None
        if serializer.validated_data.get("device_id") is not None:
            device = (
                self.scoped(Device.objects)
                .filter(pk=serializer.validated_data["device_id"])
                .first()
            )
            if device is None:
                raise serializers.ValidationError({"device_id": ["No such device."]})
        context = services.call_context(
            connector, payload=serializer.validated_data.get("payload"), device=device
        )
        call, log = services.queue_call(connector, context)
        return Response(
            {"call_id": call.pk, "log_id": log.pk, "status": call.status},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        request=None,
        responses={200: ConnectorWithTokenSerializer},
        summary="Replace a webhook's token",
        description="The old /hooks/{token} URL answers 404 at once; the new token is shown once.",
    )
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request: Request, connector_id: str) -> Response:
        connector = self.get_object()
        if connector.kind != ConnectorKind.WEBHOOK:
            raise serializers.ValidationError({"kind": ["Only webhooks have a token."]})
        token = services.rotate_webhook_token(connector, user=request.user)
        return Response(
            ConnectorWithTokenSerializer(connector, context={"webhook_token": token}).data
        )


def call_service(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a saving service, turning a config error into a 400 that names the field."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        raise serializers.ValidationError({error.field: [error.message]}) from None


class ConnectorChildViewSet(TenantScopedViewMixin[Any]):
    """Rows that belong to one connector of the tenant: another tenant's connector is 404."""

    def connector(self) -> Connector:
        return get_object_or_404(self.scoped(Connector.objects), pk=self.kwargs["connector_id"])

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(connector=self.connector())


class ConnectorCallViewSet(
    ConnectorChildViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[ConnectorCall],
):
    """Outbound calls of a connector, newest first."""

    queryset = ConnectorCall.objects.all()
    serializer_class = ConnectorCallSerializer
    filterset_class = ConnectorCallFilterSet
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_url_kwarg = "call_id"
    lookup_value_regex = r"\d+"

    @extend_schema(
        request=None,
        responses={202: QueuedCallSerializer},
        summary="Replay a call that failed or gave up",
        description="Sends the same body again, with a fresh round of retries.",
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, connector_id: str, call_id: str) -> Response:
        call = self.get_object()
        if call.status not in services.FINISHED:
            raise serializers.ValidationError(
                {"status": [f"The call is {call.status}, not finished."]}
            )
        log = services.replay_call(call)
        return Response(
            {"call_id": call.pk, "log_id": log.pk, "status": call.status},
            status=status.HTTP_202_ACCEPTED,
        )


class ConnectorLogViewSet(
    ConnectorChildViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[ConnectorLog],
):
    """Every attempt, webhook and poll of a connector, newest first."""

    queryset = ConnectorLog.objects.all()
    serializer_class = ConnectorLogSerializer
    filterset_class = ConnectorLogFilterSet
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]
    lookup_url_kwarg = "log_id"
    lookup_value_regex = r"\d+"


class RuleViewSet(TenantScopedViewMixin[Rule], viewsets.ModelViewSet[Rule]):
    """Rules of the tenant that call an outbound connector when telemetry matches."""

    queryset = Rule.objects.all()
    serializer_class = RuleSerializer
    filterset_class = RuleFilterSet
    ordering_fields = ["id", "name", "created_at"]
    ordering = ["id"]
    lookup_url_kwarg = "rule_id"
    lookup_value_regex = r"\d+"

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "tenant": self.tenant}

    def perform_create(self, serializer: BaseSerializer[Rule]) -> None:
        serializer.save(tenant=self.tenant)
        forget_rules_of(self.tenant.pk)

    def perform_update(self, serializer: BaseSerializer[Rule]) -> None:
        serializer.save()
        forget_rules_of(self.tenant.pk)

    def perform_destroy(self, instance: Rule) -> None:
        instance.delete()
        forget_rules_of(self.tenant.pk)


class HookView(APIView):
    """``POST /hooks/{token}``: another system pushes data; the webhook's mapping stores it."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: OpenApiResponse(description="`{stored, duplicates}`"),
            400: OpenApiResponse(description="The body cannot be mapped; `errors` says where."),
            401: OpenApiResponse(description="Signature missing or wrong."),
            404: OpenApiResponse(description="No webhook has this token."),
        },
        summary="Receive a webhook",
        description=(
            "The connector's mapping picks the device (by external id or token), the time "
            "and the fields from the JSON body; the points go through the ingest service. "
            "With a secret, the signature header must be `sha256=` and the hex HMAC-SHA256 "
            "of the raw body. A body that cannot be mapped stores nothing."
        ),
        tags=["connectors"],
    )
    def post(self, request: Request, token: str) -> Response:
        # The raw bytes, not request.data: the signature is over the body as sent.
        answer = services.receive_webhook(token, request.body, request.headers)
        return Response(answer.body, status=answer.status_code)
