"""HTTP helpers of the Teltonika path: a liveness ping and one already-decoded record.

Collectors that decode Teltonika packets themselves post records here; they are stored
in the same shape and through the same ingest service as the records of ``runteltonika``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.devices.services import find_device_by_token
from apps.telemetry.api.serializers import IngestResultSerializer
from apps.telemetry.api.views import (
    DeviceInactive,
    DeviceTokenInvalid,
    DeviceTokenMissing,
    device_token_from_header,
)
from apps.telemetry.batching import Reading, Refusal, submit_readings
from apps.telemetry.services import InvalidPointError
from ingest_daemons.teltonika.io_elements import named_values
from quantumfleet.api.parsers import JSONParser

logger = logging.getLogger(__name__)

MAX_IO_ELEMENTS = 1_000
MAX_IO_ID = 65_535


class GpsSerializer(serializers.Serializer[Any]):
    lat = serializers.FloatField(min_value=-90, max_value=90)
    lon = serializers.FloatField(min_value=-180, max_value=180)
    alt = serializers.IntegerField(required=False, default=0)
    angle = serializers.IntegerField(required=False, default=0, min_value=0, max_value=360)
    sat = serializers.IntegerField(required=False, default=0, min_value=0, max_value=255)
    speed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=65_535)


class TeltonikaRecordSerializer(serializers.Serializer[Any]):
    """One AVL record as a collector decoded it."""

    token = serializers.CharField(required=False, help_text="Or `Authorization: Device <token>`.")
    imei = serializers.RegexField(
        r"^\d{15}$",
        required=False,
        help_text="When given, it must be the external id of the token's device.",
    )
    timestamp = serializers.JSONField(
        help_text="Device time: milliseconds since 1970 (as in the packet) or ISO 8601."
    )
    priority = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2)
    event_io_id = serializers.IntegerField(required=False, default=0, min_value=0)
    gps = GpsSerializer()
    io = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        default=dict,
        help_text="I/O values by element id: integers, or hex strings for variable-length ones.",
    )

    def validate_timestamp(self, value: Any) -> datetime:
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                raise serializers.ValidationError("Out of range.") from None
        if isinstance(value, str):
            parsed = serializers.DateTimeField().to_internal_value(value)
            return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
        raise serializers.ValidationError("Milliseconds since 1970, or an ISO 8601 string.")

    def validate_io(self, value: dict[str, Any]) -> dict[int, int | bytes]:
        if len(value) > MAX_IO_ELEMENTS:
            raise serializers.ValidationError(f"At most {MAX_IO_ELEMENTS} elements.")
        io: dict[int, int | bytes] = {}
        for key, element in value.items():
            if not key.isdigit() or int(key) > MAX_IO_ID:
                raise serializers.ValidationError({key: ["Element ids are integers 0 to 65535."]})
            if isinstance(element, int) and not isinstance(element, bool) and element >= 0:
                io[int(key)] = element
            elif isinstance(element, str):
                try:
                    io[int(key)] = bytes.fromhex(element)
                except ValueError:
                    raise serializers.ValidationError({key: ["Not a hex string."]}) from None
            else:
                raise serializers.ValidationError(
                    {key: ["A non-negative integer or a hex string."]}
                )
        return io


def record_as_data(record: dict[str, Any], model: str) -> dict[str, Any]:
    """The validated record in the shape ``runteltonika`` stores."""
    io: dict[int, int | bytes] = record["io"]
    data: dict[str, Any] = named_values(io, {}, model)
    gps = dict(record["gps"])
    gps["valid"] = gps["sat"] > 0
    data["gps"] = gps
    data["io"] = {
        str(key): value.hex() if isinstance(value, bytes) else value for key, value in io.items()
    }
    data["priority"] = record["priority"]
    data["event_io_id"] = record["event_io_id"]
    return data


class TeltonikaPingView(APIView):
    """Liveness of the Teltonika HTTP path."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        summary="Liveness of the Teltonika ingest path",
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "time": timezone.now()})


class TeltonikaIngestView(APIView):
    """One decoded Teltonika record from a collector, stored like the daemon's."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    @extend_schema(
        request=TeltonikaRecordSerializer,
        responses={
            201: IngestResultSerializer,
            200: OpenApiResponse(IngestResultSerializer, description="Already stored."),
            401: OpenApiResponse(description="No token, or no device has it."),
            403: OpenApiResponse(description="The device is deactivated."),
        },
        parameters=[
            OpenApiParameter(
                "Authorization",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="`Device <token>`, instead of a token in the body.",
            )
        ],
        summary="Store one decoded Teltonika record",
        description=(
            "The record is stored as `{gps, io, priority, event_io_id}` plus the named, "
            "scaled I/O values of the device's model, like the records the TCP daemon "
            "receives. A repeat of a device and time already stored is a duplicate."
        ),
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = TeltonikaRecordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = serializer.validated_data
        token = record.get("token") or device_token_from_header(request)
        if not token:
            raise DeviceTokenMissing()
        device = find_device_by_token(token)
        if device is None:
            raise DeviceTokenInvalid()
        if not device.is_active:
            raise DeviceInactive()
        if "imei" in record and record["imei"] != device.external_id:
            raise exceptions.ValidationError({"imei": ["Not the IMEI of the token's device."]})

        reading = Reading(record["timestamp"], record_as_data(record, device.model))
        try:
            outcome = submit_readings(token, [reading])
        except InvalidPointError as error:
            field = "timestamp" if error.field == "ts" else error.field
            raise exceptions.ValidationError({field: [error.message]}) from None
        if outcome.refusal is Refusal.UNKNOWN_TOKEN:
            raise DeviceTokenInvalid()
        if outcome.refusal is Refusal.DEVICE_INACTIVE:
            raise DeviceInactive()
        return Response(
            {"stored": outcome.stored, "duplicates": outcome.duplicates},
            status=status.HTTP_201_CREATED if outcome.stored else status.HTTP_200_OK,
        )
