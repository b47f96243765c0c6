"""Panel config is checked per type, and queries key by key; a 400 names the bad key."""

from __future__ import annotations

import pytest

from apps.dashboards.models import Panel

from .conftest import panels_url, saved_queries_url

pytestmark = pytest.mark.django_db

GOOD_CONFIGS = [
    ("timeseries", {"unit": "km/h", "stacked": False, "colors": ["#1f77b4", "red"], "y_min": 0}),
    ("stat", {"reduce": "avg", "decimals": 2, "thresholds": [{"value": 0, "color": "green"}]}),
    ("latest_table", {"columns": ["gps.speed", "io.239"], "labels": {"io.239": "Ignition"}}),
    ("map", {"track": True, "zoom": 12, "center": {"lat": -33.4, "lon": -70.6}}),
    ("gauge", {"min": 0, "max": 160, "unit": "km/h"}),
]

BAD_CONFIGS = [
    ("timeseries", {"colour": "red"}, "config.colour"),
    ("timeseries", {"line_width": 0}, "config.line_width"),
    ("timeseries", {"colors": ["red", "not a color"]}, "config.colors.1"),
    ("timeseries", {"y_min": 10, "y_max": 5}, "config.y_max"),
    ("stat", {"reduce": "median"}, "config.reduce"),
    ("stat", {"decimals": True}, "config.decimals"),
    ("stat", {"thresholds": [{"value": 5, "color": "red"}, {"value": 1, "color": "red"}]},
     "config.thresholds.1.value"),
    ("stat", {"thresholds": [{"value": "high", "color": "red"}]}, "config.thresholds.0.value"),
    ("latest_table", {"columns": ["gps speed"]}, "config.columns.0"),
    ("latest_table", {"labels": {"gps.speed": 5}}, "config.labels.gps.speed"),
    ("latest_table", {"zoom": 3}, "config.zoom"),
    ("map", {"zoom": 21}, "config.zoom"),
    ("map", {"center": {"lat": 91, "lon": 0}}, "config.center.lat"),
    ("map", {"lat_key": ""}, "config.lat_key"),
    ("gauge", {"max": 100}, "config.min"),
    ("gauge", {"min": 0}, "config.max"),
    ("gauge", {"min": 10, "max": 10}, "config.max"),
]  # fmt: skip

BAD_QUERIES = [
    ({"keys": ["gps.speed"]}, "query.devices"),
    ({"devices": [], "keys": ["gps.speed"]}, "query.devices"),
    ({"devices": ["one"], "keys": ["gps.speed"]}, "query.devices.0"),
    ({"devices": "1", "keys": ["gps.speed"]}, "query.devices"),
    ({"devices": "DEVICE", "keys": "gps.speed"}, "query.keys"),
    ({"devices": "DEVICE", "keys": ["gps speed"]}, "query.keys"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "last": "yesterday"}, "query.last"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "last": "1h", "from": "2025-01-01"},
     "query.last"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "to": "2025-01-01T00:00:00Z"}, "query.from"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "from": "soon"}, "query.from"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "from": "2025-01-02T00:00:00Z",
      "to": "2025-01-01T00:00:00Z"}, "query.to"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "interval": "5 minutes"}, "query.interval"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "agg": ["avg"]}, "query.agg"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "interval": "5m", "agg": ["mode"]},
     "query.agg.0"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "limit": 0}, "query.limit"),
    ({"devices": "DEVICE", "keys": ["gps.speed"], "group": "day"}, "query.group"),
    ({"devices": "DEVICE"}, "query.keys"),
]  # fmt: skip


@pytest.mark.parametrize(("panel_type", "config"), GOOD_CONFIGS)
def test_each_type_accepts_its_own_options(
    client_for, tenant_a, dashboard, device, panel_type, config
):
    response = client_for(tenant_a.manager).post(
        panels_url(tenant_a, dashboard),
        {
            "title": panel_type,
            "type": panel_type,
            "config": config,
            "query": {"devices": [device.pk], "keys": ["gps.speed"]},
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["config"] == config


@pytest.mark.parametrize(("panel_type", "config", "bad_key"), BAD_CONFIGS)
def test_a_bad_option_is_named_and_nothing_is_stored(
    client_for, tenant_a, dashboard, panel_type, config, bad_key
):
    response = client_for(tenant_a.manager).post(
        panels_url(tenant_a, dashboard),
        {"title": "Bad", "type": panel_type, "config": config},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [bad_key]
    assert not Panel.objects.exists()


def test_changing_the_type_checks_the_stored_config_against_the_new_type(
    client_for, tenant_a, panel
):
    url = panels_url(tenant_a, panel.dashboard, panel.pk)

    response = client_for(tenant_a.manager).patch(url, {"type": "map"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["config.unit"]
    assert Panel.objects.get(pk=panel.pk).type == "timeseries"


def test_a_bad_patch_leaves_the_panel_as_it_was(client_for, tenant_a, panel):
    url = panels_url(tenant_a, panel.dashboard, panel.pk)
    before = Panel.objects.values().get(pk=panel.pk)

    response = client_for(tenant_a.manager).patch(
        url, {"title": "New", "config": {"decimals": 99}}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["config.decimals"]
    assert Panel.objects.values().get(pk=panel.pk) == before


@pytest.mark.parametrize(("query", "bad_key"), BAD_QUERIES)
def test_a_bad_query_is_named(client_for, tenant_a, dashboard, device, query, bad_key):
    if query.get("devices") == "DEVICE":
        query = {**query, "devices": [device.pk]}

    response = client_for(tenant_a.manager).post(
        panels_url(tenant_a, dashboard),
        {"title": "Bad", "type": "timeseries", "query": query},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [bad_key]
    assert not Panel.objects.exists()


def test_a_query_may_not_name_another_tenants_device(client_for, tenant_a, device, foreign):
    query = {"devices": [device.pk, foreign["device"].pk], "keys": ["gps.speed"]}

    response = client_for(tenant_a.admin).post(
        saved_queries_url(tenant_a), {"name": "Sneaky", "query": query}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["query.devices.1"]
    assert "Bravo" not in response.content.decode()


def test_a_stat_panel_needs_a_data_path_in_its_saved_query(client_for, tenant_a, dashboard, device):
    client = client_for(tenant_a.admin)
    saved = client.post(
        saved_queries_url(tenant_a),
        {"name": "Positions", "query": {"devices": [device.pk]}},
        format="json",
    ).json()

    stat = client.post(
        panels_url(tenant_a, dashboard),
        {"title": "Now", "type": "stat", "saved_query_id": saved["id"]},
        format="json",
    )
    map_panel = client.post(
        panels_url(tenant_a, dashboard),
        {"title": "Where", "type": "map", "saved_query_id": saved["id"]},
        format="json",
    )

    assert stat.status_code == 400
    assert list(stat.json()["errors"]) == ["saved_query_id"]
    assert map_panel.status_code == 201


def test_an_unknown_panel_type_is_named(client_for, tenant_a, dashboard):
    response = client_for(tenant_a.admin).post(
        panels_url(tenant_a, dashboard), {"title": "x", "type": "pie"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["type"]
