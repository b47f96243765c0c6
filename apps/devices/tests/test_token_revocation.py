"""A device deactivated, deleted or given a new token stops ingesting on its next message.

Token lookups are not cached (``devices_by_token_hash``), so nothing has to be
invalidated: each message reads the device's current row. These tests change the device
through the API, as a tenant manager would, and then post as the device.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from apps.devices import services
from apps.telemetry.models import Telemetry

pytestmark = pytest.mark.django_db

TOKEN = "revocation-test-token-0123456789"


@pytest.fixture
def device(tenant_a):
    created, _ = services.create_device(
        tenant=tenant_a.tenant, name="Van 7", token=TOKEN, external_id="356307042441013"
    )
    return created


def ingest(token: str = TOKEN, speed: int = 10):
    body = {"token": token, "ts": f"2025-01-01T12:00:{speed:02d}Z", "data": {"speed": speed}}
    return APIClient().post("/ingest/http", json.dumps(body), content_type="application/json")


def ingest_with_header(token: str = TOKEN):
    body = [{"ts": "2025-01-01T13:00:00Z", "data": {"speed": 1}}]
    return APIClient().post(
        "/ingest/http",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )


def teltonika_record(token: str = TOKEN):
    body = {
        "token": token,
        "timestamp": 1_560_161_086_000,
        "gps": {"lat": 54.66, "lon": 25.25},
        "io": {"239": 1},
    }
    return APIClient().post("/ingest/teltonika/ingest", body, format="json")


class TestDeactivation:
    def test_a_deactivated_device_is_refused_on_its_next_message(
        self, device, client_for, tenant_a
    ):
        assert ingest(speed=1).status_code == 201

        change = client_for(tenant_a.manager).patch(
            f"/devices/{device.pk}", {"is_active": False}, format="json"
        )
        assert change.status_code == 200

        for response in (ingest(speed=2), ingest_with_header(), teltonika_record()):
            assert response.status_code == 403
            assert response.json()["code"] == "device_inactive"
        assert Telemetry.objects.filter(device=device).count() == 1

    def test_a_reactivated_device_is_accepted_again(self, device, client_for, tenant_a):
        manager = client_for(tenant_a.manager)
        manager.patch(f"/devices/{device.pk}", {"is_active": False}, format="json")
        assert ingest(speed=1).status_code == 403

        manager.patch(f"/devices/{device.pk}", {"is_active": True}, format="json")

        assert ingest(speed=2).status_code == 201


class TestDeletion:
    def test_a_deleted_devices_token_is_unknown_on_its_next_message(
        self, device, client_for, tenant_a
    ):
        assert ingest(speed=1).status_code == 201

        assert client_for(tenant_a.manager).delete(f"/devices/{device.pk}").status_code == 204

        for response in (ingest(speed=2), ingest_with_header(), teltonika_record()):
            assert response.status_code == 401
            assert response.json()["code"] == "invalid_device_token"
        assert not Telemetry.objects.exists()

    def test_a_new_device_cannot_inherit_a_deleted_devices_points(
        self, device, client_for, tenant_a, tenant_b
    ):
        ingest(speed=1)
        client_for(tenant_a.manager).delete(f"/devices/{device.pk}")

        # The same token imported into another tenant's device starts from nothing.
        services.create_device(tenant=tenant_b.tenant, name="Other", token=TOKEN)

        assert ingest(speed=2).status_code == 201
        assert list(Telemetry.objects.values_list("tenant_id", flat=True)) == [tenant_b.tenant.pk]


class TestRotation:
    def test_the_old_token_stops_and_the_new_one_works_at_once(self, device, client_for, tenant_a):
        response = client_for(tenant_a.manager).post(f"/devices/{device.pk}/rotate-token")
        new_token = response.json()["token"]

        assert ingest(speed=1).status_code == 401
        assert teltonika_record().status_code == 401
        assert ingest(new_token, speed=2).status_code == 201
