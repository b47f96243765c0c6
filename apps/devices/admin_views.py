"""The device page of the admin: latest state, a chart, the track, sessions, commands,
telemetry browsing and CSV export, and the token and command actions.

Reads go through the telemetry query code the API uses (``apps.telemetry.queries``) and
the CSV writer of its exports, so the admin shows what the API would answer. Every read
is bounded by a time range and a row limit; nothing here counts telemetry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.devices import services
from apps.devices.models import Device, DeviceCommand, DeviceSession
from apps.telemetry import exports, queries
from apps.telemetry.models import DeviceState
from apps.telemetry.services import is_number, position_of

if TYPE_CHECKING:
    from apps.devices.admin import DeviceAdmin

logger = logging.getLogger(__name__)

RANGES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
# Bucket sizes a chart may use, in seconds; the smallest giving at most CHART_BUCKETS wins.
CHART_INTERVALS = (10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400)
CHART_BUCKETS = 300
# The track is the newest positions of the range, at most this many points read.
TRACK_MAX_POINTS = 2000
POINTS_PER_PAGE = 50
RECENT_ROWS = 10
DATETIME_INPUT = "%Y-%m-%dT%H:%M"
# DeviceCommand.text holds this many characters.
COMMAND_MAX_LENGTH = 512


@dataclass(frozen=True)
class RangeChoice:
    """The time range a page shows, as asked for in its query string."""

    name: str
    time_range: queries.TimeRange
    start_text: str
    end_text: str

    def as_query(self) -> dict[str, str]:
        if self.name != "custom":
            return {"range": self.name}
        return {"from": self.start_text, "to": self.end_text}


def parse_range(request: HttpRequest, now: datetime) -> tuple[RangeChoice, list[str]]:
    """The range of ``?range=`` (a preset) or ``?from=&to=`` (UTC), and any error found."""
    errors: list[str] = []
    start_text, end_text = request.GET.get("from", ""), request.GET.get("to", "")
    if start_text or end_text:
        try:
            start = parse_input_time(start_text) if start_text else None
            end = parse_input_time(end_text) if end_text else None
        except ValueError:
            errors.append("from/to: use the form YYYY-MM-DDTHH:MM (UTC).")
        else:
            if start and end and start >= end:
                errors.append("from must be before to.")
            else:
                start = start or (end or now) - RANGES[DEFAULT_RANGE]
                return RangeChoice(
                    "custom", queries.TimeRange(start, end), start_text, end_text
                ), errors
    name = request.GET.get("range") or DEFAULT_RANGE
    if name not in RANGES:
        errors.append(f"range: one of {', '.join(RANGES)}.")
        name = DEFAULT_RANGE
    start = now - RANGES[name]
    return RangeChoice(
        name, queries.TimeRange(start, None), start.strftime(DATETIME_INPUT), ""
    ), errors


def parse_input_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), DATETIME_INPUT).replace(tzinfo=UTC)


def chart_interval(time_range: queries.TimeRange, now: datetime) -> int:
    span = ((time_range.end or now) - (time_range.start or now)).total_seconds()
    for seconds in CHART_INTERVALS:
        if span / seconds <= CHART_BUCKETS:
            return seconds
    return CHART_INTERVALS[-1]


def numeric_paths(data: Any, prefix: str = "") -> list[str]:
    """Dot paths of the numbers in a point's data, in their order."""
    paths: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if is_number(value):
                paths.append(path)
            else:
                paths.extend(numeric_paths(value, path))
    return paths


def chart_data(device: Device, path: str, choice: RangeChoice, now: datetime) -> dict[str, Any]:
    """Average, minimum and maximum of ``path`` per bucket, for the chart."""
    interval = chart_interval(choice.time_range, now)
    query = queries.PointQuery(
        device.tenant_id, device.pk, choice.time_range, order="asc", limit=CHART_BUCKETS + 10
    )
    aggregation = queries.Aggregation(interval, [path], ["avg", "min", "max"])
    buckets = queries.aggregate_points(query, aggregation)
    return {
        "path": path,
        "interval": interval,
        "buckets": [
            {"t": int(bucket.start.timestamp() * 1000), **bucket.values[path]} for bucket in buckets
        ],
    }


def track_data(device: Device, choice: RangeChoice) -> dict[str, Any]:
    """The device's positions in the range, oldest first: the newest TRACK_MAX_POINTS read."""
    query = queries.PointQuery(
        device.tenant_id, device.pk, choice.time_range, order="desc", limit=TRACK_MAX_POINTS
    )
    page = queries.read_points(query)
    positions = []
    for row in reversed(page.rows):
        latitude, longitude = position_of(row.data)
        if latitude is not None and longitude is not None:
            positions.append([latitude, longitude, queries.iso(row.ts)])
    return {
        "points": positions,
        "truncated": page.next_cursor is not None,
        "tileUrl": settings.ADMIN_MAP_TILE_URL,
        "attribution": settings.ADMIN_MAP_TILE_ATTRIBUTION,
    }


def device_or_404(model_admin: DeviceAdmin, request: HttpRequest, object_id: str) -> Device:
    """The device if the user may see it (tenant scoping included), else 404."""
    device = model_admin.get_object(request, object_id)
    if device is None or not model_admin.has_view_permission(request, device):
        raise Http404("No such device.")
    return device


def device_overview(model_admin: DeviceAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    device = device_or_404(model_admin, request, object_id)
    now = timezone.now()
    choice, errors = parse_range(request, now)
    state = DeviceState.objects.filter(device=device).first()

    paths = numeric_paths(state.last_data) if state else []
    path = request.GET.get("path", "").strip() or (
        "gps.speed" if "gps.speed" in paths else (paths[0] if paths else "")
    )
    chart: dict[str, Any] | None = None
    try:
        chosen = queries.parse_keys(path)
    except queries.QueryError as error:
        errors.append(f"path: {error.message}")
    else:
        if chosen:
            path = chosen[0]
            chart = chart_data(device, path, choice, now)

    online_since = now - timedelta(seconds=settings.ADMIN_ONLINE_WINDOW_SECONDS)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Device {device.name}",
        "opts": model_admin.model._meta,
        "device": device,
        "state": state,
        "online": state is not None and state.last_received_at >= online_since,
        "latest_values": sorted_leaves(state.last_data) if state else [],
        "ranges": list(RANGES),
        "choice": choice,
        "errors": errors,
        "path": path,
        "paths": paths,
        "chart": chart,
        "track": track_data(device, choice),
        "sessions": DeviceSession.objects.filter(device=device).order_by("-started_at", "-id")[
            :RECENT_ROWS
        ],
        "commands": DeviceCommand.objects.filter(device=device)
        .select_related("created_by")
        .order_by("-created_at", "-id")[:RECENT_ROWS],
        "can_change": model_admin.has_change_permission(request, device),
        "range_query": query_string(choice.as_query()),
    }
    return TemplateResponse(request, "admin/devices/device/overview.html", context)


def sorted_leaves(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every scalar of a point's data as (dot path, value), in the data's order."""
    leaves: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            leaves.extend(sorted_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        leaves.append((prefix, data))
    return leaves


def query_string(params: dict[str, str]) -> str:
    return urlencode({key: value for key, value in params.items() if value})


def device_telemetry(
    model_admin: DeviceAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    """The device's points, newest first, a page at a time by time cursor."""
    device = device_or_404(model_admin, request, object_id)
    now = timezone.now()
    choice, errors = parse_range(request, now)
    keys: list[str] = []
    try:
        keys = queries.parse_keys(request.GET.get("keys", ""))
    except queries.QueryError as error:
        errors.append(f"keys: {error.message}")

    cursor = request.GET.get("cursor") or None
    query = queries.PointQuery(
        device.tenant_id, device.pk, choice.time_range, order="desc", limit=POINTS_PER_PAGE
    )
    try:
        page = queries.read_points(query, cursor)
    except queries.QueryError as error:
        errors.append(f"{error.field}: {error.message}")
        page = queries.read_points(query)

    base = {**choice.as_query(), "keys": ",".join(keys)}
    rows = [
        (row.ts, orjson.dumps(queries.select_keys(row.data, keys) if keys else row.data).decode())
        for row in page.rows
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Telemetry of {device.name}",
        "opts": model_admin.model._meta,
        "device": device,
        "ranges": list(RANGES),
        "choice": choice,
        "errors": errors,
        "keys": ",".join(keys),
        "rows": rows,
        "first_page_query": query_string(base),
        "next_page_query": (
            query_string({**base, "cursor": page.next_cursor}) if page.next_cursor else ""
        ),
        "export_query": query_string(base),
    }
    return TemplateResponse(request, "admin/devices/device/telemetry.html", context)


def device_telemetry_csv(
    model_admin: DeviceAdmin, request: HttpRequest, object_id: str
) -> HttpResponseBase:
    """The range's points as CSV, streamed in chunks by the API's own export writer."""
    device = device_or_404(model_admin, request, object_id)
    choice, errors = parse_range(request, timezone.now())
    try:
        keys = queries.parse_keys(request.GET.get("keys", ""))
    except queries.QueryError as error:
        errors.append(f"keys: {error.message}")
    if errors:
        return HttpResponse("\n".join(errors), status=400, content_type="text/plain")

    query = queries.PointQuery(device.tenant_id, device.pk, choice.time_range, order="asc")
    chunks = exports.csv_chunks(device.pk, queries.iterate_points(query), keys)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="device-{device.pk}-telemetry.csv"'
    return response


def queue_device_command(
    model_admin: DeviceAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    device = device_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, device):
        raise PermissionDenied
    text = request.POST.get("text", "").strip()
    overview = reverse("admin:devices_device_overview", args=[device.pk])
    if not text or len(text) > COMMAND_MAX_LENGTH:
        messages.error(
            request, f"Command: give the text to send, at most {COMMAND_MAX_LENGTH} characters."
        )
        return redirect(overview)
    creator = request.user if isinstance(request.user, User) else None
    command = services.queue_command(device, text, created_by=creator)
    messages.success(request, f"Command {command.pk} “{text}” queued for {device.name}.")
    return redirect(overview)


def rotate_device_token(
    model_admin: DeviceAdmin, request: HttpRequest, object_id: str
) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    device = device_or_404(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, device):
        raise PermissionDenied
    token = services.rotate_device_token(device, actor_id=request.user.pk)
    return model_admin.render_issued_tokens(request, [(device, token)], "Ingest token rotated")
