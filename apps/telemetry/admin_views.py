"""The fleet overview of the admin: devices online, ingest rates, rejected input, failures.

Every query is bounded: devices come a page at a time, the lists of rejections and
failures are the newest few of the last day, and ingest rates are read from per-minute
samples, never by counting telemetry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from apps.connectors.models import ConnectorLog, LogStatus
from apps.devices.models import Device, DeviceSession
from apps.telemetry.ingest_rates import ingest_rates
from apps.tenants.admin_scoping import admin_tenant_ids, scope_to_tenants
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

DEVICES_PER_PAGE = 50
# Rejections and failures listed: the newest of the last day, this many of each.
RECENT_ROWS = 20
RECENT_SPAN = timedelta(days=1)
# Scalar values of a device's latest point shown in the device table.
KEY_VALUES_SHOWN = 4
# Reasons the Teltonika daemon gives when it closes a connection over bad input.
BAD_INPUT_CLOSE_REASONS = ("bad_frames", "unframeable_stream", "data_before_imei", "second_imei")
FAILED_STATUSES = (LogStatus.FAILED, LogStatus.DEAD, LogStatus.RETRYING)


def online_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.ADMIN_ONLINE_WINDOW_SECONDS)


def key_values(data: Any, limit: int = KEY_VALUES_SHOWN) -> list[tuple[str, Any]]:
    """The first scalar values of a point's data as (dot path, value), nested ones too."""
    found: list[tuple[str, Any]] = []

    def walk(value: Any, path: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif not isinstance(value, list):
            found.append((path, value))

    walk(data, "")
    return found


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    online: bool
    values: list[tuple[str, Any]]


def fleet_devices(
    tenant_ids: frozenset[int] | None, filters: dict[str, str], now: datetime
) -> QuerySet[Device]:
    """Devices the user may see, narrowed by the page's filters, tenant and name first."""
    devices = scope_to_tenants(Device.objects.all(), tenant_ids, "tenant_id")
    if filters.get("tenant", "").isdigit():
        devices = devices.filter(tenant_id=int(filters["tenant"]))
    cutoff = online_cutoff(now)
    state = filters.get("state")
    if state == "online":
        devices = devices.filter(state__last_received_at__gte=cutoff)
    elif state == "offline":
        devices = devices.filter(state__last_received_at__lt=cutoff)
    elif state == "never":
        devices = devices.filter(state__isnull=True)
    search = filters.get("q", "").strip()
    if search:
        devices = devices.filter(Q(name__icontains=search) | Q(external_id__icontains=search))
    return devices.select_related("tenant", "state").order_by("tenant__name", "name", "id")


def tenant_summaries(tenant_ids: frozenset[int] | None, now: datetime) -> QuerySet[Tenant]:
    """Each visible tenant with its device count and how many are online, in one query."""
    tenants: QuerySet[Tenant] = scope_to_tenants(Tenant.objects.all(), tenant_ids, "id")
    return tenants.annotate(
        device_total=Count("devices_device"),
        device_online=Count(
            "devices_device",
            filter=Q(devices_device__state__last_received_at__gte=online_cutoff(now)),
        ),
    ).order_by("name", "id")


def recent_rejections(tenant_ids: frozenset[int] | None, now: datetime) -> dict[str, Any]:
    """The newest rejected webhook calls and Teltonika connections closed for bad input.

    MQTT and HTTP rejections are answered to the sender and counted in the daemons'
    metrics and logs; they are not stored, so they cannot be listed here.
    """
    since = now - RECENT_SPAN
    webhooks = scope_to_tenants(
        ConnectorLog.objects.filter(status=LogStatus.REJECTED, created_at__gte=since),
        tenant_ids,
        "tenant_id",
    ).select_related("connector", "tenant")
    connections = scope_to_tenants(
        DeviceSession.objects.filter(
            close_reason__in=BAD_INPUT_CLOSE_REASONS, started_at__gte=since
        ),
        tenant_ids,
        "tenant_id",
    ).select_related("device", "tenant")
    return {
        "webhooks": list(webhooks.order_by("-created_at", "-id")[:RECENT_ROWS]),
        "connections": list(connections.order_by("-started_at", "-id")[:RECENT_ROWS]),
    }


def recent_connector_failures(
    tenant_ids: frozenset[int] | None, now: datetime
) -> list[ConnectorLog]:
    failures = scope_to_tenants(
        ConnectorLog.objects.filter(status__in=FAILED_STATUSES, created_at__gte=now - RECENT_SPAN),
        tenant_ids,
        "tenant_id",
    ).select_related("connector", "tenant")
    return list(failures.order_by("-created_at", "-id")[:RECENT_ROWS])


def fleet_overview(request: HttpRequest) -> HttpResponse:
    """The fleet page of the admin (/admin/fleet/)."""
    tenant_ids = admin_tenant_ids(request)
    if tenant_ids is not None and not tenant_ids:
        raise PermissionDenied("You administer no tenant.")
    now = timezone.now()
    filters = {name: request.GET.get(name, "") for name in ("tenant", "state", "q")}

    paginator = Paginator(fleet_devices(tenant_ids, filters, now), DEVICES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    cutoff = online_cutoff(now)
    rows = []
    for device in page.object_list:
        state = getattr(device, "state", None)
        online = state is not None and state.last_received_at >= cutoff
        rows.append(DeviceRow(device, online, key_values(state.last_data) if state else []))

    summaries = list(tenant_summaries(tenant_ids, now))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        **admin.site.each_context(request),
        "title": "Fleet overview",
        "now": now,
        "online_window": settings.ADMIN_ONLINE_WINDOW_SECONDS,
        "tenants": summaries,
        "filters": filters,
        "page": page,
        "rows": rows,
        "page_query": query.urlencode(),
        "rates": ingest_rates(tenant_ids, now),
        "rejections": recent_rejections(tenant_ids, now),
        "failures": recent_connector_failures(tenant_ids, now),
        "recent_span_hours": int(RECENT_SPAN.total_seconds() // 3600),
    }
    return TemplateResponse(request, "admin/fleet_overview.html", context)
