"""The development demo comes with a dashboard whose every panel answers."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apps.dashboards.configs import check_panel_config
from apps.dashboards.models import Dashboard
from apps.tenants.models import Tenant
from quantumfleet.environment import Environment

pytestmark = pytest.mark.django_db


def test_bootstrap_demo_creates_a_working_dashboard_once(settings, client_for):
    settings.DJANGO_ENV = Environment.DEVELOPMENT
    first = StringIO()
    call_command("bootstrap_demo", stdout=first)
    call_command("bootstrap_demo", stdout=StringIO())

    dashboard = Dashboard.objects.get()
    tenant = Tenant.objects.get(slug="demo")
    client = client_for(dashboard.tenant.user_roles.get().user)
    panels = client.get(f"/tenants/{tenant.pk}/dashboards/{dashboard.pk}/panels").json()

    assert "Created dashboard Demo FMC650." in first.getvalue()
    assert {panel["type"] for panel in panels} == {
        "timeseries",
        "stat",
        "gauge",
        "map",
        "latest_table",
    }
    for panel in panels:
        check_panel_config(panel["type"], panel["config"])
        data = client.get(
            f"/tenants/{tenant.pk}/dashboards/{dashboard.pk}/panels/{panel['id']}/data"
        )
        assert data.status_code == 200, (panel["title"], data.json())
