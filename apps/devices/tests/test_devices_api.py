from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from apps.devices import services
from apps.devices.models import Device, DeviceProtocol
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

IMEI = "356307042441013"


def make_device(cast, **fields) -> Device:
    fields.setdefault("name", "Truck 1")
    device, _ = services.create_device(tenant=cast.tenant, **fields)
    return device


class TestCreate:
    @pytest.mark.parametrize("role", [Role.ADMIN, Role.MANAGER])
    def test_managers_and_admins_create_and_see_the_token_once(self, client_for, tenant_a, role):
        client = client_for(tenant_a.member(role))

        created = client.post(
            "/devices",
            {"name": "Truck 7", "external_id": IMEI, "model": "FMC650", "protocol": "teltonika"},
            format="json",
        )

        assert created.status_code == 201
        body = created.json()
        token = body["token"]
        assert len(token) >= 40
        assert body["token_prefix"] == token[:8]
        assert body["tenant_id"] == tenant_a.tenant.pk
        read_back = client.get(f"/devices/{body['id']}").json()
        assert "token" not in read_back
        assert services.find_device_by_token(token).pk == body["id"]

    def test_viewers_cannot_create(self, client_for, tenant_a):
        response = client_for(tenant_a.viewer).post("/devices", {"name": "x"}, format="json")

        assert response.status_code == 403
        assert not Device.objects.exists()

    def test_the_token_is_not_stored_in_any_column(self, client_for, tenant_a):
        token = client_for(tenant_a.admin).post("/devices", {"name": "x"}).json()["token"]

        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM devices")
            row = cursor.fetchone()
        assert token not in [str(value) for value in row]
        assert hashlib.sha256(token.encode()).hexdigest() in row

    def test_an_existing_hardware_token_can_be_imported(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).post(
            "/devices", {"name": "Legacy", "token": "TOKEN_DEL_DISPOSITIVO_1234"}
        )

        assert response.status_code == 201
        assert response.json()["token"] == "TOKEN_DEL_DISPOSITIVO_1234"
        assert services.find_device_by_token("TOKEN_DEL_DISPOSITIVO_1234").name == "Legacy"

    def test_an_imported_token_must_be_long_and_free(self, client_for, tenant_a):
        make_device(tenant_a, token="already-in-use-token-1234")
        client = client_for(tenant_a.admin)

        short = client.post("/devices", {"name": "a", "token": "short"})
        taken = client.post("/devices", {"name": "b", "token": "already-in-use-token-1234"})

        assert short.status_code == taken.status_code == 400
        assert list(short.json()["errors"]) == list(taken.json()["errors"]) == ["token"]
        assert Device.objects.count() == 1

    def test_external_ids_are_unique_across_the_platform(self, client_for, tenant_a, tenant_b):
        make_device(tenant_b, external_id=IMEI)

        response = client_for(tenant_a.admin).post(
            "/devices", {"name": "Copy", "external_id": IMEI}
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["external_id"]

    @pytest.mark.parametrize("external_id", [None, "", "12345", "35630704244101X"])
    def test_a_teltonika_device_needs_an_imei(self, client_for, tenant_a, external_id):
        body = {"name": "FM", "protocol": "teltonika"}
        if external_id is not None:
            body["external_id"] = external_id

        response = client_for(tenant_a.admin).post("/devices", body, format="json")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["external_id"]

    def test_an_unknown_protocol_is_named(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).post("/devices", {"name": "x", "protocol": "smtp"})

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["protocol"]

    def test_a_blank_external_id_is_stored_as_none(self, client_for, tenant_a):
        client = client_for(tenant_a.admin)

        first = client.post("/devices", {"name": "a", "external_id": ""})
        second = client.post("/devices", {"name": "b", "external_id": "  "})

        assert (first.status_code, second.status_code) == (201, 201)
        assert first.json()["external_id"] is None

    def test_the_tenant_cannot_be_chosen_in_the_body(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_a.admin).post(
            "/devices", {"name": "x", "tenant_id": tenant_b.tenant.pk}, format="json"
        )

        assert response.json()["tenant_id"] == tenant_a.tenant.pk


class TestReadUpdateDelete:
    @pytest.mark.parametrize("role", list(Role))
    def test_every_role_reads(self, client_for, tenant_a, role):
        device = make_device(tenant_a)

        listing = client_for(tenant_a.member(role)).get("/devices")
        detail = client_for(tenant_a.member(role)).get(f"/devices/{device.pk}")

        assert [d["id"] for d in listing.json()] == [device.pk]
        assert detail.json()["name"] == "Truck 1"

    def test_put_replaces_and_patch_merges(self, client_for, tenant_a):
        device = make_device(tenant_a, model="FMB920")
        client = client_for(tenant_a.manager)

        patched = client.patch(f"/devices/{device.pk}", {"is_active": False}, format="json")
        put = client.put(f"/devices/{device.pk}", {"name": "Renamed"}, format="json")

        assert patched.status_code == 200
        assert patched.json()["model"] == "FMB920"
        assert patched.json()["is_active"] is False
        assert put.status_code == 200
        device.refresh_from_db()
        assert (device.name, device.model, device.is_active) == ("Renamed", "", True)

    def test_patch_to_teltonika_without_imei_is_refused(self, client_for, tenant_a):
        device = make_device(tenant_a)

        response = client_for(tenant_a.manager).patch(
            f"/devices/{device.pk}", {"protocol": "teltonika"}
        )

        assert response.status_code == 400
        device.refresh_from_db()
        assert device.protocol == DeviceProtocol.HTTP

    def test_viewers_cannot_change_or_delete(self, client_for, tenant_a):
        device = make_device(tenant_a)
        client = client_for(tenant_a.viewer)

        assert client.patch(f"/devices/{device.pk}", {"name": "x"}).status_code == 403
        assert client.delete(f"/devices/{device.pk}").status_code == 403
        assert client.post(f"/devices/{device.pk}/rotate-token").status_code == 403
        device.refresh_from_db()
        assert device.name == "Truck 1"

    def test_a_manager_deletes(self, client_for, tenant_a):
        device = make_device(tenant_a)

        response = client_for(tenant_a.manager).delete(f"/devices/{device.pk}")

        assert response.status_code == 204
        assert not Device.objects.exists()

    def test_paths_with_a_trailing_slash_work_too(self, client_for, tenant_a):
        device = make_device(tenant_a)
        client = client_for(tenant_a.manager)

        assert client.get("/devices/").status_code == 200
        assert client.patch(f"/devices/{device.pk}/", {"name": "y"}).status_code == 200

    def test_a_missing_device_is_a_json_404(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).get("/devices/987654")

        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


class TestRotateToken:
    def test_the_old_token_stops_and_the_new_one_works(self, client_for, tenant_a):
        device, old_token = services.create_device(tenant=tenant_a.tenant, name="x")

        response = client_for(tenant_a.manager).post(f"/devices/{device.pk}/rotate-token")

        assert response.status_code == 200
        new_token = response.json()["token"]
        assert new_token != old_token
        assert services.find_device_by_token(old_token) is None
        assert services.find_device_by_token(new_token).pk == device.pk


class TestFilteringAndPaging:
    @pytest.fixture
    def fleet(self, tenant_a, tenant_b):
        make_device(tenant_a, name="Truck North", external_id=IMEI, model="FMC650")
        make_device(tenant_a, name="Van South", model="FMB920", is_active=False)
        make_device(tenant_a, name="Truck South", model="FMB920", protocol="mqtt")
        make_device(tenant_b, name="Truck Foreign", model="FMC650")

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("q=truck", ["Truck North", "Truck South"]),
            ("q=fmb", ["Van South", "Truck South"]),
            (f"q={IMEI[-5:]}", ["Truck North"]),
            ("name=south", ["Van South", "Truck South"]),
            (f"external_id={IMEI}", ["Truck North"]),
            ("is_active=false", ["Van South"]),
            ("active=true", ["Truck North", "Truck South"]),
            ("protocol=mqtt", ["Truck South"]),
            ("model=fmc650", ["Truck North"]),
            ("ordering=-name", ["Van South", "Truck South", "Truck North"]),
        ],
    )
    def test_filters_stay_inside_the_tenant(self, client_for, tenant_a, fleet, query, expected):
        response = client_for(tenant_a.viewer).get(f"/devices?{query}")

        assert response.status_code == 200
        assert [d["name"] for d in response.json()] == expected

    def test_a_bad_filter_value_is_named(self, client_for, tenant_a, fleet):
        response = client_for(tenant_a.viewer).get("/devices?protocol=smtp")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["protocol"]

    def test_pages_are_linked_in_headers_and_the_body_stays_a_list(
        self, client_for, tenant_a, fleet
    ):
        client = client_for(tenant_a.viewer)

        first = client.get("/devices?limit=2")
        second = client.get("/devices?limit=2&offset=2")

        assert isinstance(first.json(), list)
        assert len(first.json()) == 2
        assert first["X-Total-Count"] == "3"
        assert 'rel="next"' in first["Link"]
        assert "offset=2" in first["Link"]
        assert len(second.json()) == 1
        assert 'rel="prev"' in second["Link"]
        assert 'rel="next"' not in second["Link"]
