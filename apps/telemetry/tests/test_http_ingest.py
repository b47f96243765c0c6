"""POST /ingest/http: the seed's body, the batch forms, device auth, and every 400."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from apps.devices import services as device_services
from apps.telemetry.models import DeviceState, Telemetry

from .conftest import DEVICE_TOKEN

pytestmark = pytest.mark.django_db

SEED_BODY = {
    "token": DEVICE_TOKEN,
    "ts": "2025-01-01T12:00:00Z",
    "data": {"gps": {"lat": -33.4, "lon": -70.6, "speed": 12.3}, "io": {"24": 65, "239": 1}},
}


def post(client: APIClient, body, **headers):
    return client.post("/ingest/http", json.dumps(body), content_type="application/json", **headers)


class TestAccepted:
    def test_the_seeds_curl_example_is_stored(self, anonymous, device):
        response = post(anonymous, SEED_BODY)

        assert response.status_code == 201
        assert response.json() == {"stored": 1, "duplicates": 0}
        stored = Telemetry.objects.get(device=device)
        assert stored.data == SEED_BODY["data"]
        assert stored.ts.isoformat() == "2025-01-01T12:00:00+00:00"

    def test_a_resend_is_a_200_duplicate(self, anonymous, device):
        post(anonymous, SEED_BODY)

        response = post(anonymous, SEED_BODY)

        assert response.status_code == 200
        assert response.json() == {"stored": 0, "duplicates": 1}
        assert Telemetry.objects.count() == 1

    def test_without_ts_the_arrival_time_is_used(self, anonymous, device):
        response = post(anonymous, {"token": DEVICE_TOKEN, "data": {"x": 1}})

        assert response.status_code == 201
        stored = Telemetry.objects.get(device=device)
        assert abs((stored.ts - stored.received_at).total_seconds()) < 1

    def test_a_batch_with_the_token_in_the_body(self, anonymous, device):
        body = {
            "token": DEVICE_TOKEN,
            "points": [
                {"ts": "2025-01-01T12:00:00Z", "data": {"n": 1}},
                {"ts": "2025-01-01T12:00:01+00:00", "data": {"n": 2}},
                {"ts": "2025-01-01T09:00:02-03:00", "data": {"n": 3}},
            ],
        }

        response = post(anonymous, body)

        assert response.json() == {"stored": 3, "duplicates": 0}
        assert DeviceState.objects.get(device=device).last_data == {"n": 3}

    def test_a_bare_list_with_the_device_authorization_header(self, anonymous, device):
        body = [{"ts": "2025-01-01T12:00:00Z", "data": {"n": 1}}]

        response = post(anonymous, body, HTTP_AUTHORIZATION=f"Device {DEVICE_TOKEN}")

        assert response.status_code == 201
        assert Telemetry.objects.filter(device=device).count() == 1


class TestDeviceAuth:
    def test_no_token_is_401(self, anonymous, device):
        response = post(anonymous, {"ts": "2025-01-01T12:00:00Z", "data": {}})

        assert response.status_code == 401
        assert response.json()["code"] == "device_token_missing"

    def test_an_unknown_token_is_401(self, anonymous, device):
        response = post(anonymous, {**SEED_BODY, "token": "nope-not-a-token"})

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_device_token"
        assert not Telemetry.objects.exists()

    def test_a_jwt_is_not_a_device_token(self, client_for, tenant_a, device):
        body = {k: v for k, v in SEED_BODY.items() if k != "token"}

        response = post(client_for(tenant_a.admin), body)

        assert response.status_code == 401

    def test_an_inactive_device_is_403(self, anonymous, device):
        device.is_active = False
        device.save()

        response = post(anonymous, SEED_BODY)

        assert response.status_code == 403
        assert response.json()["code"] == "device_inactive"
        assert not Telemetry.objects.exists()

    def test_a_rotated_token_stops_at_once(self, anonymous, device):
        new_token = device_services.rotate_device_token(device)

        old = post(anonymous, SEED_BODY)
        new = post(anonymous, {**SEED_BODY, "token": new_token})

        assert (old.status_code, new.status_code) == (401, 201)


@pytest.mark.django_db(transaction=True)
def test_the_answer_is_built_only_after_the_points_are_committed(anonymous, device, monkeypatch):
    from django.db import connections

    from apps.telemetry.api import views

    seen_by_another_connection = []
    real_response = views.HttpResponse  # type: ignore[attr-defined]

    def response_that_checks(*args, **kwargs):
        # What a second client of the database sees at the moment the answer is made.
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM telemetry")
                seen_by_another_connection.append(cursor.fetchone()[0])
        finally:
            other.close()
        return real_response(*args, **kwargs)

    monkeypatch.setattr(views, "HttpResponse", response_that_checks)

    response = post(anonymous, SEED_BODY)

    assert response.status_code == 201
    assert seen_by_another_connection == [1]


BAD_BODIES = [
    ({"token": DEVICE_TOKEN, "ts": "yesterday", "data": {}}, "ts"),
    ({"token": DEVICE_TOKEN, "ts": 1735732800, "data": {}}, "ts"),
    ({"token": DEVICE_TOKEN, "ts": "1999-12-31T23:59:59Z", "data": {}}, "ts"),
    ({"token": DEVICE_TOKEN, "ts": "2999-01-01T00:00:00Z", "data": {}}, "ts"),
    ({"token": DEVICE_TOKEN, "ts": "2025-01-01T12:00:00Z", "data": [1, 2]}, "data"),
    ({"token": DEVICE_TOKEN, "ts": "2025-01-01T12:00:00Z", "data": "text"}, "data"),
    ({"token": DEVICE_TOKEN, "ts": "2025-01-01T12:00:00Z"}, "data"),
    ({"token": 12345, "data": {}}, "token"),
    ({"token": DEVICE_TOKEN, "points": "many"}, "points"),
    ({"token": DEVICE_TOKEN, "points": []}, "points"),
    (
        {
            "token": DEVICE_TOKEN,
            "points": [
                {"ts": "2025-01-01T12:00:00Z", "data": {}},
                {"ts": "2025-01-01T12:00:01Z", "data": {}},
                {"ts": "2025-01-01T12:00:02Z", "data": {}},
                {"ts": "not a time", "data": {}},
            ],
        },
        "points.3.ts",
    ),
    (
        {"token": DEVICE_TOKEN, "points": [{"ts": "2025-01-01T12:00:00Z", "data": {}}, 7]},
        "points.1",
    ),
    ({"token": DEVICE_TOKEN, "points": [{"data": {}}]}, "points.0.ts"),
    ({"token": DEVICE_TOKEN, "points": [{"ts": "2025-01-01T12:00:00Z"}]}, "points.0.data"),
    (
        {
            "token": DEVICE_TOKEN,
            "points": [
                {"ts": "2025-01-01T12:00:00Z", "data": {"ok": 1}},
                {"ts": "2025-01-01T12:00:01Z", "data": {"bad": "\u0000"}},
            ],
        },
        "points.1.data",
    ),
    (
        {"token": DEVICE_TOKEN, "ts": "2025-01-01T12:00:00Z", "data": {"x": "y" * 70_000}},
        "data",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_a_bad_body_is_a_400_naming_the_field_and_stores_nothing(anonymous, device, body, field):
    response = post(anonymous, body)

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field]
    assert not Telemetry.objects.exists()
    assert not DeviceState.objects.exists()


def test_a_list_without_the_header_still_needs_a_token(anonymous, device):
    response = post(anonymous, [{"ts": "2025-01-01T12:00:00Z", "data": {}}])

    assert response.status_code == 401


def test_malformed_json_is_a_400(anonymous, device):
    response = anonymous.post("/ingest/http", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_too_many_points_is_a_400(anonymous, device, settings):
    settings.TELEMETRY_MAX_BATCH_POINTS = 2
    points = [{"ts": f"2025-01-01T12:00:0{i}Z", "data": {}} for i in range(3)]

    response = post(anonymous, {"token": DEVICE_TOKEN, "points": points})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["points"]


def test_an_oversized_body_is_a_413(anonymous, device, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    points = [
        {"ts": f"2025-01-01T12:{i // 60:02d}:{i % 60:02d}Z", "data": {"pad": "x" * 50}}
        for i in range(300)
    ]

    response = post(anonymous, {"token": DEVICE_TOKEN, "points": points})

    assert response.status_code == 413
    assert not Telemetry.objects.exists()


def test_a_form_body_is_refused(anonymous, device):
    response = anonymous.post("/ingest/http", {"token": DEVICE_TOKEN, "data": "{}"})

    assert response.status_code == 415
