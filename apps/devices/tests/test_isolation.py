"""Every device route, tried by every role of one tenant against the other's device."""

from __future__ import annotations

import pytest

from apps.devices import services
from apps.devices.models import Device
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

FOREIGN_ROUTES = [
    ("get", "/devices/{id}", None),
    ("put", "/devices/{id}", {"name": "Hijacked"}),
    ("patch", "/devices/{id}", {"name": "Hijacked"}),
    ("delete", "/devices/{id}", None),
    ("post", "/devices/{id}/rotate-token", None),
    ("get", "/devices/{id}/commands", None),
    ("post", "/devices/{id}/commands", {"text": "setdigout 1"}),
    ("get", "/devices/{id}/commands/{command_id}", None),
]


@pytest.fixture
def foreign_device(tenant_b) -> Device:
    device, _ = services.create_device(
        tenant=tenant_b.tenant, name="Bravo secret truck", external_id="111111111111111"
    )
    return device


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("method", "path", "body"), FOREIGN_ROUTES)
def test_another_tenants_device_is_404_and_untouched(
    client_for, tenant_a, foreign_device, role, method, path, body
):
    before = Device.objects.values().get(pk=foreign_device.pk)
    command = services.queue_command(foreign_device, "getinfo")
    client = client_for(tenant_a.member(role))

    response = getattr(client, method)(
        path.format(id=foreign_device.pk, command_id=command.pk), body, format="json"
    )

    # Viewers are refused writes before the lookup (403); nobody learns the device exists.
    assert (
        response.status_code in (403, 404) if role == Role.VIEWER else response.status_code == 404
    )
    assert "Bravo" not in response.content.decode()
    assert Device.objects.values().get(pk=foreign_device.pk) == before
    assert list(foreign_device.commands.values_list("text", flat=True)) == ["getinfo"]


@pytest.mark.parametrize("role", list(Role))
def test_another_tenants_devices_never_appear_in_lists(client_for, tenant_a, foreign_device, role):
    client = client_for(tenant_a.member(role))

    listing = client.get("/devices")
    searched = client.get("/devices?q=Bravo")
    by_imei = client.get("/devices?external_id=111111111111111")

    assert listing.json() == searched.json() == by_imei.json() == []


@pytest.mark.parametrize("role", list(Role))
def test_naming_the_other_tenant_in_the_header_is_forbidden(
    client_for, tenant_a, tenant_b, foreign_device, role
):
    client = client_for(tenant_a.member(role), tenant=tenant_b.tenant)

    listing = client.get("/devices")
    detail = client.get(f"/devices/{foreign_device.pk}")
    created = client.post("/devices", {"name": "Planted"}, format="json")

    assert (listing.status_code, detail.status_code, created.status_code) == (403, 403, 403)
    assert not Device.objects.filter(name="Planted").exists()


@pytest.mark.parametrize(("method", "path", "body"), FOREIGN_ROUTES)
def test_an_outsider_reaches_no_device(client_for, outsider, foreign_device, method, path, body):
    command = services.queue_command(foreign_device, "getinfo")
    response = getattr(client_for(outsider), method)(
        path.format(id=foreign_device.pk, command_id=command.pk), body, format="json"
    )

    assert response.status_code == 403
    assert "Bravo" not in response.content.decode()
