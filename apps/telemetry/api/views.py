"""HTTP ingest, telemetry queries, the fleet's latest state and exports."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.devices.api.filtersets import DeviceFilterSet
from apps.devices.models import Device
from apps.telemetry import exports, limits, queries
from apps.telemetry.api.ingest import parse_body, to_readings
from apps.telemetry.api.serializers import (
    BucketSerializer,
    IngestResultSerializer,
    LatestStateSerializer,
    PointSerializer,
    TelemetryQuerySerializer,
)
from apps.telemetry.batching import Arrival, Refusal, arriving
from apps.telemetry.services import InvalidPointError
from apps.tenants.models import Role
from apps.tenants.scoping import TenantScopedViewMixin
from quantumfleet.api.errors import PayloadTooLarge, error_response
from quantumfleet.api.filters import IdInFilter
from quantumfleet.api.pagination import LinkHeaderPagination
from quantumfleet.api.parsers import JSONParser

logger = logging.getLogger(__name__)

DEVICE_AUTH_SCHEME = "device"
# A device that sends no Content-Type is read as JSON too, as the original system did.
JSON_MEDIA_TYPES = frozenset({"application/json", ""})

INGEST_BODY_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "title": "One point",
            "required": ["data"],
            "properties": {
                "token": {"type": "string", "description": "The device's ingest token."},
                "ts": {
                    "type": "string",
                    "format": "date-time",
                    "description": "Device time; the arrival time when omitted.",
                },
                "data": {"type": "object", "additionalProperties": True},
            },
        },
        {
            "type": "object",
            "title": "A batch",
            "required": ["points"],
            "properties": {
                "token": {"type": "string"},
                "points": {"type": "array", "items": {"$ref": "#/components/schemas/TimedPoint"}},
            },
        },
        {
            "type": "array",
            "title": "A bare batch (token in the Authorization header)",
            "items": {"$ref": "#/components/schemas/TimedPoint"},
        },
    ]
}


class DeviceTokenMissing(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "device_token_missing"
    default_detail = (
        "Send the device token as `token` in the body or `Authorization: Device <token>`."
    )


class DeviceTokenInvalid(DeviceTokenMissing):
    default_code = "invalid_device_token"
    default_detail = "No device has this token."


class DeviceInactive(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "device_inactive"
    default_detail = "This device is deactivated; its data is refused."


class IngestLimited(exceptions.Throttled):
    """A device or its tenant is over a rate limit or quota: 429 with ``Retry-After``."""

    def __init__(self, limit: limits.Refusal) -> None:
        super().__init__(wait=limit.retry_after, detail=limit.message, code=str(limit.reason))
        self.retry_after = limit.retry_after


class ExportFormatNegotiation(DefaultContentNegotiation):
    """Leaves ``?format=`` to the view, where it picks an export (csv, gpx)."""

    class settings:  # noqa: N801  (stands in for DRF's api_settings here)
        URL_FORMAT_OVERRIDE = None


def device_token_from_header(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == DEVICE_AUTH_SCHEME and token.strip():
        return token.strip()
    return None


class HttpIngestView(APIView):
    """Devices and gateways post points here with their device token."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    @extend_schema(
        request={"application/json": INGEST_BODY_SCHEMA},
        responses={
            201: IngestResultSerializer,
            200: OpenApiResponse(IngestResultSerializer, description="Every point was a repeat."),
            401: OpenApiResponse(description="No token, or no device has it."),
            403: OpenApiResponse(description="The device is deactivated."),
            429: OpenApiResponse(
                description=(
                    "The device or its tenant is over its rate limit or stored-points "
                    "quota; nothing was stored. Retry after `Retry-After` seconds."
                )
            ),
        },
        parameters=[
            OpenApiParameter(
                "Authorization",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="`Device <token>`, instead of a token in the body.",
            )
        ],
        summary="Store points from a device",
        description=(
            "The original body `{token, ts, data}`; `{token, points: [{ts, data}, ...]}`; or "
            "a bare list of `{ts, data}` with `Authorization: Device <token>`. A batch is "
            "stored whole or not at all: a 400 names the first bad field, e.g. "
            "`points.3.ts`. A point repeating a device and time already stored is counted "
            "in `duplicates` and dropped. The response comes after the points are committed."
        ),
        auth=[],
    )
    def post(self, request: Request) -> HttpResponse:
        return self.ingest(request._request)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Answer POST on Django's own request and response, without DRF's wrappers.

        Devices call this endpoint more than all others together, one point at a time;
        DRF's request wrapper, content negotiation and renderer would cost about as much
        as storing the point. Other methods (OPTIONS, a 405) still go through DRF, and
        errors keep the API's one error shape.
        """
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        try:
            return self.ingest(request)
        except RequestDataTooBig:
            return error_response(PayloadTooLarge())
        except exceptions.APIException as error:
            response = error_response(error)
            if isinstance(error, IngestLimited):
                response["Retry-After"] = str(error.retry_after)
            return response

    def ingest(self, request: HttpRequest) -> HttpResponse:
        with arriving() as arrival:
            return self.store(request, arrival)

    def store(self, request: HttpRequest, arrival: Arrival) -> HttpResponse:
        media_type = request.content_type or ""
        if media_type not in JSON_MEDIA_TYPES:
            raise exceptions.UnsupportedMediaType(media_type)
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None

        body = parse_body(payload)
        token = body.token or device_token_from_header(request)
        if not token:
            raise DeviceTokenMissing()
        readings = to_readings(body.points, timezone.now())
        try:
            outcome = arrival.submit(token, readings)
        except InvalidPointError as error:
            path = body.points[error.index].path if error.index is not None else ""
            raise exceptions.ValidationError({f"{path}{error.field}": [error.message]}) from None

        if outcome.refusal is Refusal.UNKNOWN_TOKEN:
            logger.info("ingest.unknown_token", extra={"token_prefix": token[:4]})
            raise DeviceTokenInvalid()
        if outcome.refusal is Refusal.DEVICE_INACTIVE:
            raise DeviceInactive()
        if outcome.limit is not None:
            raise IngestLimited(outcome.limit)
        return HttpResponse(
            orjson.dumps({"stored": outcome.stored, "duplicates": outcome.duplicates}),
            status=status.HTTP_201_CREATED if outcome.stored else status.HTTP_200_OK,
            content_type="application/json",
        )


DEVICE_NOT_FOUND = OpenApiResponse(description="`device_id` names no device of the tenant.")


class TelemetryQueryView(TenantScopedViewMixin[Device]):
    """A device's points, newest first, or summarised per time bucket."""

    queryset = Device.objects.all()
    # What OPTIONS describes; answer() validates with it too.
    serializer_class = TelemetryQuerySerializer
    # POST carries a query, not a change: viewers may send it.
    write_role = Role.VIEWER
    parser_classes = [JSONParser]
    content_negotiation_class = ExportFormatNegotiation

    @extend_schema(
        parameters=[TelemetryQuerySerializer],
        responses={200: PointSerializer(many=True), 404: DEVICE_NOT_FOUND},
        summary="Query a device's telemetry",
        description=(
            "Raw points as `{device_id, ts, data}`, newest first. With `interval` (and "
            "`agg`), buckets computed by the database instead (see the POST form for their "
            "shape). Long ranges page with `cursor` (the `X-Next-Cursor` header). "
            "`format=csv` and `format=gpx` stream the whole range as a file."
        ),
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        return self.answer(request, request.query_params)

    @extend_schema(
        request=TelemetryQuerySerializer,
        responses={
            200: PointSerializer(many=True),
            201: BucketSerializer(many=True),
            404: DEVICE_NOT_FOUND,
        },
        summary="Query a device's telemetry (body form)",
        description=(
            "The original body `{device_id, limit, from, to}` plus the query-string options. "
            "Aggregated answers are lists of `{device_id, ts, values}`, `ts` being the start "
            "of the bucket."
        ),
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        return self.answer(request, request.data)

    def answer(self, request: Request, params: Any) -> Response | StreamingHttpResponse:
        serializer = TelemetryQuerySerializer(data=params)
        serializer.is_valid(raise_exception=True)
        options = serializer.validated_data
        device = self.scoped(Device.objects).filter(pk=options["device_id"]).first()
        if device is None:
            raise exceptions.NotFound("No device with this id in your tenant.", code="not_found")

        exporting = options["format"] != "json"
        query = queries.PointQuery(
            tenant_id=self.tenant.pk,
            device_id=device.pk,
            time_range=queries.TimeRange(options.get("from"), options.get("to")),
            order=options["order"],
            # Exports stream the whole range unless asked for fewer; pages have a size.
            limit=options.get("limit") or (None if exporting else self.default_limit),
        )
        if exporting:
            return self.export(device, query, options)
        if options["interval_seconds"]:
            return self.aggregate(query, options)
        return self.raw(request, query, options)

    @property
    def default_limit(self) -> int:
        return int(settings.TELEMETRY_QUERY_DEFAULT_LIMIT)

    def raw(self, request: Request, query: queries.PointQuery, options: Any) -> Response:
        try:
            page = queries.read_points(query, cursor=options.get("cursor"))
        except queries.QueryError as error:
            raise exceptions.ValidationError({error.field: [error.message]}) from None

        keys = options["keys"]
        body = [
            {
                "device_id": query.device_id,
                "ts": queries.iso(row.ts),
                "data": queries.select_keys(row.data, keys) if keys else row.data,
            }
            for row in page.rows
        ]
        headers = {}
        if page.next_cursor:
            headers["X-Next-Cursor"] = page.next_cursor
            next_url = self.next_url(request, query, keys, page.next_cursor)
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Response(body, headers=headers)

    def next_url(
        self, request: Request, query: queries.PointQuery, keys: list[str], cursor: str
    ) -> str:
        params: dict[str, Any] = {
            "device_id": query.device_id,
            "order": query.order,
            "cursor": cursor,
            "limit": query.limit,
        }
        if query.time_range.start:
            params["from"] = queries.iso(query.time_range.start)
        if query.time_range.end:
            params["to"] = queries.iso(query.time_range.end)
        if keys:
            params["keys"] = ",".join(keys)
        return request.build_absolute_uri(f"{request.path}?{urlencode(params)}")

    def aggregate(self, query: queries.PointQuery, options: Any) -> Response:
        aggregation = queries.Aggregation(
            interval_seconds=options["interval_seconds"],
            keys=options["keys"],
            aggregates=options["aggregates"],
        )
        buckets = queries.aggregate_points(query, aggregation)
        return Response(
            [
                {
                    "device_id": query.device_id,
                    "ts": queries.iso(bucket.start),
                    "values": bucket.values,
                }
                for bucket in buckets
            ]
        )

    def export(
        self, device: Device, query: queries.PointQuery, options: Any
    ) -> StreamingHttpResponse:
        rows = queries.iterate_points(query)
        if options["format"] == "csv":
            chunks = exports.csv_chunks(device.pk, rows, options["keys"])
            content_type, extension = "text/csv; charset=utf-8", "csv"
        else:
            chunks = exports.gpx_chunks(device.name, rows)
            content_type, extension = "application/gpx+xml", "gpx"
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="device-{device.pk}-telemetry.{extension}"'
        )
        return response


class LatestStateFilterSet(DeviceFilterSet):
    device_id = IdInFilter(field_name="id", label="Device ids, comma-separated.")

    class Meta(DeviceFilterSet.Meta):
        fields = [*DeviceFilterSet.Meta.fields, "device_id"]


class LatestStateView(TenantScopedViewMixin[Device]):
    """The latest point and position of every device of the tenant: the fleet view."""

    queryset = Device.objects.order_by("id")
    filterset_class = LatestStateFilterSet
    ordering_fields = ["id", "name", "state__last_ts"]

    @extend_schema(responses=LatestStateSerializer(many=True))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        paginator = self.paginator
        assert isinstance(paginator, LinkHeaderPagination)
        limit, offset = paginator.page_bounds(request)
        # The database counts, pages and writes the whole answer in one statement: a fleet
        # of thousands of devices would otherwise cost Python a parse and a render of
        # every device's data.
        count, body = queries.latest_states_page(
            self.filter_queryset(self.get_queryset()), limit, offset
        )
        return HttpResponse(
            body, content_type="application/json", headers=paginator.headers_for_count(count)
        )
