"""GET .../panels/{id}/data against telemetry whose answers are computed here."""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.dashboards import services
from apps.dashboards.models import Panel
from apps.devices import services as device_services
from apps.telemetry.services import Point, ingest_points

from .conftest import DAY, T0, panels_url

pytestmark = pytest.mark.django_db

SPEEDS = [10 * n for n in range(10)]


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def history(device):
    """Ten points a minute apart from T0: speed 10·n, a position on even minutes."""
    points = []
    for n, speed in enumerate(SPEEDS):
        data: dict[str, Any] = {"gps": {"speed": speed}, "ignition": n % 2, "label": f"p{n}"}
        if n % 2 == 0:
            data["gps"] |= {"lat": -33.0 - n / 100, "lon": -70.0 - n / 100}
        points.append(Point(device.tenant_id, device.pk, T0 + timedelta(minutes=n), data))
    ingest_points(points)


def make_panel(dashboard, device, panel_type, config=None, **query) -> Panel:
    return services.create_panel(
        dashboard=dashboard,
        title=panel_type,
        type=panel_type,
        config=config or {},
        query={"devices": [device.pk], **DAY, **query},
    )


def data_of(client_for, cast, panel) -> dict[str, Any]:
    response = client_for(cast.viewer).get(panels_url(cast, panel.dashboard, panel.pk, "data"))
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_timeseries_panel_draws_raw_points_oldest_first(
    client_for, tenant_a, dashboard, device, history
):
    panel = make_panel(dashboard, device, "timeseries", keys=["gps.speed", "label"])

    body = data_of(client_for, tenant_a, panel)

    assert (body["panel_id"], body["type"], body["interval"]) == (panel.pk, "timeseries", None)
    assert (body["from"], body["to"]) == ("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z")
    speed, label = body["series"]
    assert (speed["device_id"], speed["key"], speed["agg"]) == (device.pk, "gps.speed", None)
    assert speed["points"] == [{"ts": iso(n), "value": SPEEDS[n]} for n in range(10)]
    assert speed["truncated"] is False
    # Text is not drawn on a chart.
    assert label["points"] == []


def test_a_timeseries_panel_with_an_interval_draws_database_buckets(
    client_for, tenant_a, dashboard, device, history
):
    panel = make_panel(
        dashboard, device, "timeseries", keys=["gps.speed"], interval="5m", agg=["avg", "max"]
    )

    body = data_of(client_for, tenant_a, panel)

    average, maximum = body["series"]
    assert (average["agg"], maximum["agg"]) == ("avg", "max")
    assert average["points"] == [
        {"ts": iso(0), "value": statistics.mean(SPEEDS[:5])},
        {"ts": iso(5), "value": statistics.mean(SPEEDS[5:])},
    ]
    assert [point["value"] for point in maximum["points"]] == [max(SPEEDS[:5]), max(SPEEDS[5:])]


def test_the_newest_points_are_kept_when_a_range_holds_more_than_the_limit(
    client_for, tenant_a, dashboard, device, history
):
    panel = make_panel(dashboard, device, "timeseries", keys=["gps.speed"], limit=3)

    series = data_of(client_for, tenant_a, panel)["series"][0]

    assert [point["value"] for point in series["points"]] == SPEEDS[-3:]
    assert series["truncated"] is True


@pytest.mark.parametrize(
    ("reduce", "expected"),
    [
        ("last", SPEEDS[-1]),
        ("first", SPEEDS[0]),
        ("avg", statistics.mean(SPEEDS)),
        ("min", min(SPEEDS)),
        ("max", max(SPEEDS)),
        ("sum", sum(SPEEDS)),
        ("count", len(SPEEDS)),
    ],
)
def test_a_stat_panel_reduces_the_range_to_one_value(
    client_for, tenant_a, dashboard, device, history, reduce, expected
):
    panel = make_panel(dashboard, device, "stat", {"reduce": reduce}, keys=["gps.speed"])

    body = data_of(client_for, tenant_a, panel)

    assert body["reduce"] == reduce
    assert body["values"] == [
        {
            "device_id": device.pk,
            "device_name": "Truck A",
            "key": "gps.speed",
            "value": pytest.approx(expected),
        }
    ]


def test_a_gauge_straddling_two_buckets_combines_them(
    client_for, tenant_a, dashboard, device, history
):
    # 12:03 to 12:08 is five minutes that do not start at a multiple of five minutes.
    panel = make_panel(
        dashboard,
        device,
        "gauge",
        {"min": 0, "max": 160, "reduce": "avg"},
        keys=["gps.speed"],
        **{"from": iso(3), "to": iso(8)},
    )

    body = data_of(client_for, tenant_a, panel)

    assert body["values"][0]["value"] == pytest.approx(statistics.mean(SPEEDS[3:8]))


def test_a_latest_table_shows_each_devices_newest_point(
    client_for, tenant_a, dashboard, device, history
):
    silent, _ = device_services.create_device(tenant=tenant_a.tenant, name="Silent")
    panel = services.create_panel(
        dashboard=dashboard,
        title="Now",
        type="latest_table",
        config={"columns": ["gps.speed", "ignition"]},
        query={"devices": [device.pk, silent.pk], **DAY},
    )

    rows = data_of(client_for, tenant_a, panel)["rows"]

    assert rows == [
        {
            "device_id": device.pk,
            "device_name": "Truck A",
            "ts": iso(9),
            "data": {"gps": {"speed": 90}, "ignition": 1},
        },
        {"device_id": silent.pk, "device_name": "Silent", "ts": None, "data": None},
    ]


def test_a_map_draws_a_track_or_the_newest_position(
    client_for, tenant_a, dashboard, device, history
):
    track = make_panel(dashboard, device, "map", {"track": True})
    newest = make_panel(dashboard, device, "map")

    track_body = data_of(client_for, tenant_a, track)["tracks"][0]
    newest_body = data_of(client_for, tenant_a, newest)["tracks"][0]

    assert track_body["positions"] == [
        {"ts": iso(n), "lat": -33.0 - n / 100, "lon": -70.0 - n / 100} for n in range(0, 10, 2)
    ]
    assert newest_body["positions"] == [{"ts": iso(8), "lat": -33.08, "lon": -70.08}]


def test_a_panel_reads_its_saved_query(
    client_for, tenant_a, dashboard, device, saved_query, history
):
    panel = services.create_panel(
        dashboard=dashboard, title="Now", type="stat", saved_query=saved_query
    )

    body = data_of(client_for, tenant_a, panel)

    assert body["values"][0]["value"] == SPEEDS[-1]


def test_last_is_a_range_ending_now(client_for, tenant_a, dashboard, device):
    now = timezone.now()
    ingest_points(
        [
            Point(device.tenant_id, device.pk, now - timedelta(days=2), {"v": 1}),
            Point(device.tenant_id, device.pk, now - timedelta(minutes=10), {"v": 2}),
        ]
    )
    panel = services.create_panel(
        dashboard=dashboard,
        title="Count",
        type="stat",
        config={"reduce": "count"},
        query={"devices": [device.pk], "keys": ["v"], "last": "24h"},
    )

    assert data_of(client_for, tenant_a, panel)["values"][0]["value"] == 1


def test_a_deleted_device_is_left_out(client_for, tenant_a, dashboard, device, history):
    gone, _ = device_services.create_device(tenant=tenant_a.tenant, name="Gone")
    panel = services.create_panel(
        dashboard=dashboard,
        title="Both",
        type="timeseries",
        query={"devices": [gone.pk, device.pk], "keys": ["gps.speed"], **DAY},
    )
    device_services.delete_device(gone)

    series = data_of(client_for, tenant_a, panel)["series"]

    assert [item["device_id"] for item in series] == [device.pk]


def test_a_panel_without_a_query_is_a_400_naming_it(client_for, tenant_a, dashboard):
    panel = services.create_panel(dashboard=dashboard, title="Empty", type="map")

    response = client_for(tenant_a.viewer).get(panels_url(tenant_a, dashboard, panel.pk, "data"))

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["query"]
