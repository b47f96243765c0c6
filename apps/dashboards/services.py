"""State changes of dashboards, panels and saved queries, one transaction each.

Callers pass values the API serializers have already checked (config per panel type,
queries against the tenant's devices).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)


class SavedQueryInUseError(Exception):
    """Raised when deleting a saved query that panels still read."""

    def __init__(self, panel_ids: list[int]) -> None:
        super().__init__(f"Panels {', '.join(map(str, panel_ids))} use this saved query.")
        self.panel_ids = panel_ids


@transaction.atomic
def create_dashboard(*, tenant: Tenant, **fields: Any) -> Dashboard:
    dashboard = Dashboard.objects.create(tenant=tenant, **fields)
    logger.info("dashboard.created", extra={"dashboard_id": dashboard.pk, "tenant_id": tenant.pk})
    return dashboard


@transaction.atomic
def update_dashboard(dashboard: Dashboard, **changes: Any) -> Dashboard:
    for field, value in changes.items():
        setattr(dashboard, field, value)
    dashboard.save()
    return dashboard


@transaction.atomic
def delete_dashboard(dashboard: Dashboard) -> None:
    """Delete the dashboard and its panels; saved queries stay."""
    logger.info(
        "dashboard.deleted",
        extra={"dashboard_id": dashboard.pk, "tenant_id": dashboard.tenant_id},
    )
    dashboard.delete()


@transaction.atomic
def create_panel(*, dashboard: Dashboard, **fields: Any) -> Panel:
    return Panel.objects.create(tenant_id=dashboard.tenant_id, dashboard=dashboard, **fields)


@transaction.atomic
def update_panel(panel: Panel, **changes: Any) -> Panel:
    for field, value in changes.items():
        setattr(panel, field, value)
    panel.save()
    return panel


@transaction.atomic
def delete_panel(panel: Panel) -> None:
    panel.delete()


@transaction.atomic
def create_saved_query(*, tenant: Tenant, **fields: Any) -> SavedQuery:
    return SavedQuery.objects.create(tenant=tenant, **fields)


@transaction.atomic
def update_saved_query(saved_query: SavedQuery, **changes: Any) -> SavedQuery:
    for field, value in changes.items():
        setattr(saved_query, field, value)
    saved_query.save()
    return saved_query


@transaction.atomic
def delete_saved_query(saved_query: SavedQuery) -> None:
    """Delete a saved query no panel uses; raise ``SavedQueryInUseError`` otherwise."""
    panel_ids = list(
        Panel.objects.select_for_update()
        .filter(saved_query=saved_query)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if panel_ids:
        raise SavedQueryInUseError(panel_ids)
    saved_query.delete()


DEMO_DASHBOARD_NAME = "Demo FMC650"


@transaction.atomic
def ensure_demo_dashboard(*, tenant: Tenant, device_id: int) -> Dashboard | None:
    """Create the development demo's dashboard for the demo tracker; None if it exists.

    One panel of each type, fed by a saved query and by panel queries over the data a
    Teltonika FMC650 sends (``gps.*``, ``external_voltage``, ``io.*``).
    """
    if Dashboard.objects.for_tenant(tenant).filter(name=DEMO_DASHBOARD_NAME).exists():
        return None
    speed = SavedQuery.objects.filter(tenant=tenant, name="Demo speed, last 24 h").first()
    if speed is None:
        speed = create_saved_query(
            tenant=tenant,
            name="Demo speed, last 24 h",
            query={"devices": [device_id], "keys": ["gps.speed"], "last": "24h"},
        )
    dashboard = create_dashboard(
        tenant=tenant,
        name=DEMO_DASHBOARD_NAME,
        description="The demo tracker: speed, position, power and its latest values.",
        layout={"columns": 12, "refresh_seconds": 30},
    )
    day = {"devices": [device_id], "last": "24h"}
    panels: list[dict[str, Any]] = [
        {
            "title": "Speed (5 min average and maximum)",
            "type": "timeseries",
            "x": 0,
            "y": 0,
            "w": 8,
            "h": 4,
            "config": {"unit": "km/h", "legend": True},
            "query": {**day, "keys": ["gps.speed"], "interval": "5m", "agg": ["avg", "max"]},
        },
        {
            "title": "Current speed",
            "type": "stat",
            "x": 8,
            "y": 0,
            "w": 4,
            "h": 2,
            "config": {"unit": "km/h", "reduce": "last", "decimals": 0},
            "saved_query": speed,
        },
        {
            "title": "External voltage",
            "type": "gauge",
            "x": 8,
            "y": 2,
            "w": 4,
            "h": 2,
            "config": {
                "unit": "V",
                "min": 0,
                "max": 32,
                "decimals": 1,
                "thresholds": [
                    {"value": 0, "color": "red"},
                    {"value": 11.5, "color": "orange"},
                    {"value": 12.5, "color": "green"},
                ],
            },
            "query": {**day, "keys": ["external_voltage"]},
        },
        {
            "title": "Track",
            "type": "map",
            "x": 0,
            "y": 4,
            "w": 8,
            "h": 6,
            "config": {"track": True, "zoom": 12},
            "query": {**day, "limit": 2000},
        },
        {
            "title": "Latest values",
            "type": "latest_table",
            "x": 8,
            "y": 4,
            "w": 4,
            "h": 6,
            "config": {
                "columns": ["gps.speed", "gps.sat", "ignition", "external_voltage"],
                "labels": {"gps.sat": "Satellites", "external_voltage": "Voltage"},
                "show_ts": True,
            },
            "query": day,
        },
    ]
    for fields in panels:
        create_panel(dashboard=dashboard, **fields)
    return dashboard
