"""CSV and GPX exports, streamed, parsed back."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ElementTree

import pytest
from django.http import StreamingHttpResponse

from apps.telemetry import exports

pytestmark = pytest.mark.django_db

GPX = "{http://www.topografix.com/GPX/1/1}"
TPX = "{" + exports.TRACK_POINT_EXTENSION + "}"


@pytest.fixture
def trip(device, store):
    readings = [
        (0, {"gps": {"lat": -33.45, "lon": -70.66, "alt": 520, "speed": 36.0}, "io": {"239": 1}}),
        (1, {"io": {"239": 1}, "note": 'commas, "quotes"\nand lines'}),
        (2, {"gps": {"lat": -33.46, "lon": -70.67, "alt": 518, "speed": 0}, "io": {"239": 0}}),
    ]
    store(device, *readings)
    return readings


def body_of(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def test_csv_with_keys_has_a_column_per_key(client_for, tenant_a, device, trip):
    response = client_for(tenant_a.viewer).get(
        f"/telemetry/query?device_id={device.pk}&format=csv&order=asc&keys=gps.speed,io.239,note"
    )

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert [row["gps.speed"] for row in rows] == ["36.0", "", "0"]
    assert [row["io.239"] for row in rows] == ["1", "1", "0"]
    assert rows[1]["note"] == trip[1][1]["note"]
    assert [row["device_id"] for row in rows] == [str(device.pk)] * 3
    assert rows[0]["ts"] == "2025-01-01T12:00:00Z"


def test_csv_without_keys_carries_the_data_as_json(client_for, tenant_a, device, trip):
    response = client_for(tenant_a.viewer).get(f"/telemetry/query?device_id={device.pk}&format=csv")

    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert [json.loads(row["data"]) for row in rows] == [data for _, data in reversed(trip)]


def test_csv_streams_in_chunks_beyond_one_page(client_for, tenant_a, device, store):
    count = exports.ROWS_PER_CHUNK * 2 + 7
    store(device, *[(n / 60, {"n": n}) for n in range(count)])

    response = client_for(tenant_a.viewer).get(
        f"/telemetry/query?device_id={device.pk}&format=csv&keys=n"
    )

    chunks = [chunk for chunk in response.streaming_content if chunk]
    assert len(chunks) >= 3
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == count
    assert rows[0]["n"] == str(count - 1)


def test_gpx_is_a_track_of_positioned_points_in_time_order(client_for, tenant_a, device, trip):
    response = client_for(tenant_a.viewer).get(f"/telemetry/query?device_id={device.pk}&format=gpx")

    assert response["Content-Type"] == "application/gpx+xml"
    root = ElementTree.fromstring(body_of(response))  # noqa: S314
    assert root.find(f"{GPX}trk/{GPX}name").text == device.name
    points = root.findall(f".//{GPX}trkpt")
    assert [(p.get("lat"), p.get("lon")) for p in points] == [
        ("-33.45", "-70.66"),
        ("-33.46", "-70.67"),
    ]
    assert [p.find(f"{GPX}time").text for p in points] == [
        "2025-01-01T12:00:00Z",
        "2025-01-01T12:02:00Z",
    ]
    assert points[0].find(f"{GPX}ele").text == "520"
    assert float(points[0].find(f".//{TPX}speed").text or "") == pytest.approx(10.0)


def test_exports_honour_the_time_range(client_for, tenant_a, device, trip):
    response = client_for(tenant_a.viewer).get(
        f"/telemetry/query?device_id={device.pk}&format=csv&from=2025-01-01T12:01:00Z"
        "&to=2025-01-01T12:02:00Z&keys=io.239"
    )

    rows = list(csv.DictReader(io.StringIO(body_of(response))))
    assert [row["ts"] for row in rows] == ["2025-01-01T12:01:00Z"]
