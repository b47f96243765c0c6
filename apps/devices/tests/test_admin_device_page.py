"""The device page of the admin: state, chart, track, telemetry pages, CSV and actions."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.devices import services
from apps.devices.models import CommandStatus, Device, DeviceCommand, DeviceSession
from apps.telemetry.services import Point, ingest_points

pytestmark = pytest.mark.django_db


def store_track(device: Device, count: int, end: datetime, step: timedelta) -> list[datetime]:
    """``count`` points one ``step`` apart up to ``end``, driving north-east at rising speed."""
    times = [end - step * (count - 1 - index) for index in range(count)]
    ingest_points(
        [
            Point(
                device.tenant_id,
                device.pk,
                ts,
                {"gps": {"lat": 52.0 + index * 0.001, "lon": 4.0 + index * 0.001, "speed": index}},
            )
            for index, ts in enumerate(times)
        ]
    )
    return times


def embedded(page: str, name: str) -> Any:
    match = re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', page, re.S)
    assert match, f"{name} is not on the page"
    return json.loads(match.group(1))


@pytest.fixture
def device(tenant_a) -> Device:
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Truck 7", protocol="teltonika")
    return device


def overview(device: Device) -> str:
    return reverse("admin:devices_device_overview", args=[device.pk])


def test_the_device_page_shows_state_chart_track_sessions_and_commands(operator, device):
    now = timezone.now().replace(microsecond=0)
    store_track(device, 30, now - timedelta(minutes=1), timedelta(minutes=1))
    DeviceSession.objects.create(
        tenant_id=device.tenant_id,
        device=device,
        transport="teltonika-tcp",
        peer="192.0.2.7:40000",
        started_at=now,
        last_seen=now,
    )
    services.queue_command(device, "getver")

    response = operator.get(overview(device), {"range": "1h", "path": "gps.speed"})

    assert response.status_code == 200
    page = response.content.decode()
    chart = embedded(page, "chart-data")
    assert chart["path"] == "gps.speed"
    assert any(bucket["max"] is not None for bucket in chart["buckets"])
    assert max(bucket["max"] for bucket in chart["buckets"]) == 29
    track = embedded(page, "track-data")
    assert len(track["points"]) == 30
    assert track["points"][0][:2] == [52.0, 4.0]
    assert track["points"][-1][0] == pytest.approx(52.029)
    assert "192.0.2.7:40000" in page
    assert "getver" in page
    assert "gps.speed" in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert "vendor/leaflet/leaflet.js" in page


def test_the_track_leaves_out_points_without_a_valid_position(operator, device):
    now = timezone.now().replace(microsecond=0)
    ingest_points(
        [
            Point(device.tenant_id, device.pk, now - timedelta(minutes=3), {"gps": {"lat": 1.5}}),
            Point(
                device.tenant_id,
                device.pk,
                now - timedelta(minutes=2),
                {"gps": {"lat": 0, "lon": 0, "speed": 1}},
            ),
            Point(
                device.tenant_id,
                device.pk,
                now - timedelta(minutes=1),
                {"gps": {"lat": 48.1, "lon": 11.5, "speed": 2}},
            ),
        ]
    )

    page = operator.get(overview(device), {"range": "1h"}).content.decode()

    assert [point[:2] for point in embedded(page, "track-data")["points"]] == [[48.1, 11.5]]


def test_the_map_tile_url_is_a_setting(operator, device, settings):
    settings.ADMIN_MAP_TILE_URL = ""

    page = operator.get(overview(device)).content.decode()

    assert embedded(page, "track-data")["tileUrl"] == ""


def test_a_bad_path_or_range_is_named_and_the_page_still_renders(operator, device):
    response = operator.get(overview(device), {"path": "gps speed;drop", "range": "9y"})

    page = response.content.decode()
    assert response.status_code == 200
    assert "path: " in page
    assert "range: one of" in page


def test_browsing_pages_through_points_by_time_without_counting_them(operator, device):
    now = timezone.now().replace(microsecond=0)
    times = store_track(device, 120, now - timedelta(seconds=10), timedelta(seconds=10))
    url = reverse("admin:devices_device_telemetry", args=[device.pk])

    with CaptureQueriesContext(connection) as captured:
        first = operator.get(url, {"range": "1h", "keys": "gps.speed"})
    # Read now: the next request clears the connection's query log.
    telemetry_sql = [q["sql"] for q in captured.captured_queries if "telemetry" in q["sql"]]
    older_link = re.search(r'id="older-points" href="\?([^"]+)"', first.content.decode())
    assert older_link
    second = operator.get(f"{url}?{older_link.group(1).replace('&amp;', '&')}")

    assert telemetry_sql
    assert not any("COUNT(" in sql.upper() for sql in telemetry_sql)
    first_rows = first.context["rows"]
    second_rows = second.context["rows"]
    assert len(first_rows) == len(second_rows) == 50
    assert first_rows[0][0] == times[-1]
    assert second_rows[0][0] == times[-51]
    assert first_rows[0][1] == '{"gps":{"speed":119}}'


def test_the_csv_export_streams_the_range_with_the_chosen_columns(operator, device):
    now = timezone.now().replace(microsecond=0)
    store_track(device, 5, now - timedelta(minutes=1), timedelta(minutes=1))
    start = (now - timedelta(minutes=3, seconds=30)).astimezone(UTC)

    response = operator.get(
        reverse("admin:devices_device_telemetry_csv", args=[device.pk]),
        {"from": start.strftime("%Y-%m-%dT%H:%M"), "keys": "gps.speed,gps.lat"},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["device_id", "ts", "gps.speed", "gps.lat"]
    speeds = [row[2] for row in rows[1:]]
    assert speeds == sorted(speeds, key=int)
    assert set(speeds) <= {"1", "2", "3", "4"}
    assert "4" in speeds
    assert all(row[0] == str(device.pk) for row in rows[1:])


def test_a_bad_export_range_is_refused(operator, device):
    response = operator.get(
        reverse("admin:devices_device_telemetry_csv", args=[device.pk]),
        {"from": "2026-02-30T10:00"},
    )

    assert response.status_code == 400
    assert b"from/to" in response.content


def test_sending_a_command_queues_it_for_the_device(operator, device, superuser):
    response = operator.post(
        reverse("admin:devices_device_command", args=[device.pk]), {"text": "getgps"}
    )

    assert response.status_code == 302
    command = DeviceCommand.objects.get(device=device)
    assert (command.text, command.status, command.created_by) == (
        "getgps",
        CommandStatus.QUEUED,
        superuser,
    )


def test_an_empty_command_is_refused(operator, device):
    response = operator.post(
        reverse("admin:devices_device_command", args=[device.pk]), {"text": "  "}, follow=True
    )

    assert "give the text to send" in response.content.decode()
    assert not DeviceCommand.objects.exists()


def test_rotating_the_token_shows_the_new_one_once(operator, tenant_a):
    device, old_token = services.create_device(tenant=tenant_a.tenant, name="Rotated")

    response = operator.post(reverse("admin:devices_device_rotate_token", args=[device.pk]))

    [new_token] = re.findall(
        r'<code class="issued-token">([^<]+)</code>', response.content.decode()
    )
    assert services.find_device_by_token(old_token) is None
    assert services.find_device_by_token(new_token) == device
    assert "no-store" in response["Cache-Control"]


def test_the_pages_refuse_get_for_actions(operator, device):
    assert (
        operator.get(reverse("admin:devices_device_command", args=[device.pk])).status_code == 405
    )


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("overview", "get"),
        ("telemetry", "get"),
        ("telemetry_csv", "get"),
        ("command", "post"),
        ("rotate_token", "post"),
    ],
)
def test_another_tenants_admin_cannot_reach_the_device(tenant_b, device, name, method):
    tenant_b.admin.is_staff = True
    tenant_b.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_b.admin)
    token_hash = device.token_hash

    response = getattr(client, method)(
        reverse(f"admin:devices_device_{name}", args=[device.pk]), {"text": "cpureset"}
    )

    assert response.status_code == 404
    assert not DeviceCommand.objects.exists()
    device.refresh_from_db()
    assert device.token_hash == token_hash


def test_a_tenant_admin_uses_the_page_of_their_own_device(tenant_a, device):
    tenant_a.admin.is_staff = True
    tenant_a.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_a.admin)

    page = client.get(overview(device))
    sent = client.post(reverse("admin:devices_device_command", args=[device.pk]), {"text": "x"})

    assert page.status_code == 200
    assert sent.status_code == 302
    assert DeviceCommand.objects.filter(device=device, created_by=tenant_a.admin).exists()


def test_the_change_list_links_each_device_to_its_page(operator, device):
    page = operator.get(reverse("admin:devices_device_changelist")).content.decode()

    assert overview(device) in page


def test_the_change_page_links_to_the_device_page(operator, device):
    page = operator.get(reverse("admin:devices_device_change", args=[device.pk])).content.decode()

    assert overview(device) in page
