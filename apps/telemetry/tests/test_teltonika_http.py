"""The Teltonika HTTP helpers: the ping and one record decoded elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apps.devices import services as device_services
from apps.telemetry.models import DeviceState, Telemetry
from apps.telemetry.tests.conftest import DEVICE_TOKEN

pytestmark = pytest.mark.django_db

IMEI = "356307042441013"
TS_MS = 1_560_161_086_000


@pytest.fixture
def tracker(device):
    return device_services.update_device(device, external_id=IMEI, protocol="teltonika")


def record(**changes: Any) -> dict[str, Any]:
    body = {
        "token": DEVICE_TOKEN,
        "imei": IMEI,
        "timestamp": TS_MS,
        "priority": 1,
        "event_io_id": 239,
        "gps": {"lat": 54.6676016, "lon": 25.2562916, "alt": 111, "angle": 214, "sat": 12},
        "io": {"239": 1, "66": 24_080, "216": 1_234_567, "9999": 7, "528": "57564757"},
    }
    body.update(changes)
    return body


def test_the_ping_answers_without_credentials(anonymous):
    response = anonymous.get("/ingest/teltonika/ping")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_a_record_is_stored_like_the_daemons(anonymous, tracker):
    response = anonymous.post("/ingest/teltonika/ingest", record(), format="json")

    assert response.status_code == 201
    assert response.json() == {"stored": 1, "duplicates": 0}
    point = Telemetry.objects.get(device_id=tracker.pk)
    assert point.ts == datetime.fromtimestamp(TS_MS / 1000, tz=UTC)
    assert point.data["gps"]["valid"] is True
    assert point.data["io"] == {
        "239": 1,
        "66": 24_080,
        "216": 1_234_567,
        "9999": 7,
        "528": "57564757",
    }
    assert point.data["ignition"] == 1
    assert point.data["external_voltage"] == pytest.approx(24.08)
    assert point.data["total_odometer"] == 1_234_567
    assert point.data["priority"] == 1
    assert point.data["event_io_id"] == 239
    assert DeviceState.objects.get(device_id=tracker.pk).latitude == pytest.approx(54.6676016)


def test_the_same_record_again_is_a_duplicate(anonymous, tracker):
    anonymous.post("/ingest/teltonika/ingest", record(), format="json")

    again = anonymous.post("/ingest/teltonika/ingest", record(), format="json")

    assert again.status_code == 200
    assert again.json() == {"stored": 0, "duplicates": 1}
    assert Telemetry.objects.count() == 1


def test_an_iso_timestamp_and_the_device_header_work(anonymous, tracker):
    body = record(timestamp="2026-11-01T08:00:00Z")
    del body["token"]

    response = anonymous.post(
        "/ingest/teltonika/ingest", body, format="json", HTTP_AUTHORIZATION=f"Device {DEVICE_TOKEN}"
    )

    assert response.status_code == 201
    assert Telemetry.objects.get().ts == datetime(2026, 11, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        ({"timestamp": "yesterday"}, "timestamp", 400),
        ({"timestamp": 5}, "timestamp", 400),
        ({"gps": {"lat": 91, "lon": 0}}, "gps.lat", 400),
        ({"io": {"ignition": 1}}, "io.ignition", 400),
        ({"io": {"239": -1}}, "io.239", 400),
        ({"io": {"256": "zz"}}, "io.256", 400),
        ({"imei": "356307042441099"}, "imei", 400),
        ({"token": "not-a-device-token-at-all"}, None, 401),
    ],
)
def test_bad_input_is_refused_and_nothing_stored(anonymous, tracker, changes, field, status):
    response = anonymous.post("/ingest/teltonika/ingest", record(**changes), format="json")

    assert response.status_code == status
    if field:
        assert field in response.json()["errors"]
    assert not Telemetry.objects.exists()


def test_an_inactive_device_is_refused(anonymous, tracker):
    device_services.update_device(tracker, is_active=False)

    response = anonymous.post("/ingest/teltonika/ingest", record(), format="json")

    assert response.status_code == 403
    assert not Telemetry.objects.exists()
