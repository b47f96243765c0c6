from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.dashboards import services
from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.devices import services as device_services
from apps.devices.models import Device

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY = {"from": "2025-01-01T00:00:00Z", "to": "2025-01-02T00:00:00Z"}


def dashboards_url(cast, *parts: object) -> str:
    return "/".join([f"/tenants/{cast.tenant.pk}/dashboards", *map(str, parts)])


def panels_url(cast, dashboard: Dashboard, *parts: object) -> str:
    return dashboards_url(cast, dashboard.pk, "panels", *parts)


def saved_queries_url(cast, *parts: object) -> str:
    return "/".join([f"/tenants/{cast.tenant.pk}/saved-queries", *map(str, parts)])


@pytest.fixture
def device(tenant_a) -> Device:
    created, _ = device_services.create_device(tenant=tenant_a.tenant, name="Truck A")
    return created


@pytest.fixture
def dashboard(tenant_a) -> Dashboard:
    return services.create_dashboard(tenant=tenant_a.tenant, name="Fleet", layout={"cols": 12})


@pytest.fixture
def panel(dashboard, device) -> Panel:
    return services.create_panel(
        dashboard=dashboard,
        title="Speed",
        type="timeseries",
        config={"unit": "km/h", "legend": True},
        query={"devices": [device.pk], "keys": ["gps.speed"], **DAY},
    )


@pytest.fixture
def saved_query(tenant_a, device) -> SavedQuery:
    return services.create_saved_query(
        tenant=tenant_a.tenant,
        name="Speed today",
        query={"devices": [device.pk], "keys": ["gps.speed"], **DAY},
    )


@pytest.fixture
def foreign(tenant_b):
    """A dashboard, panel, saved query and device of the other tenant."""
    device, _ = device_services.create_device(tenant=tenant_b.tenant, name="Bravo secret truck")
    dashboard = services.create_dashboard(tenant=tenant_b.tenant, name="Bravo secret board")
    saved = services.create_saved_query(
        tenant=tenant_b.tenant,
        name="Bravo secret query",
        query={"devices": [device.pk], "keys": ["gps.speed"]},
    )
    panel = services.create_panel(
        dashboard=dashboard, title="Bravo secret panel", type="stat", saved_query=saved
    )
    return {"device": device, "dashboard": dashboard, "panel": panel, "saved_query": saved}
