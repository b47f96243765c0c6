from __future__ import annotations

import re
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.devices import services
from apps.devices.models import Device

pytestmark = pytest.mark.django_db


def shown_tokens(html: str) -> list[str]:
    return re.findall(r'<code class="issued-token">([^<]+)</code>', html)


def test_adding_a_device_shows_its_token_once(operator, tenant_a):
    response = operator.post(
        "/admin/devices/device/add/",
        {"tenant": tenant_a.tenant.pk, "name": "Admin truck", "protocol": "http", "model": ""},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [token] = shown_tokens(response.content.decode())
    device = Device.objects.get(name="Admin truck")
    assert services.find_device_by_token(token) == device
    change_page = operator.get(f"/admin/devices/device/{device.pk}/change/").content.decode()
    assert token not in change_page
    assert device.token_prefix in change_page


def test_the_rotate_action_replaces_the_selected_tokens(operator, tenant_a):
    first, first_token = services.create_device(tenant=tenant_a.tenant, name="One")
    second, second_token = services.create_device(tenant=tenant_a.tenant, name="Two")

    response = operator.post(
        "/admin/devices/device/",
        {"action": "rotate_tokens", "_selected_action": [first.pk, second.pk]},
    )

    new_tokens = shown_tokens(response.content.decode())
    assert len(new_tokens) == 2
    assert services.find_device_by_token(first_token) is None
    assert services.find_device_by_token(second_token) is None
    assert {services.find_device_by_token(token) for token in new_tokens} == {first, second}


def test_lists_show_the_tenant_and_never_a_whole_token(operator, tenant_a):
    _, token = services.create_device(tenant=tenant_a.tenant, name="Listed", model="FMC650")

    page = operator.get("/admin/devices/device/?q=Listed").content.decode()

    assert "Listed" in page
    assert tenant_a.tenant.name in page
    assert token not in page


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/accounts/user/add/",
        "/admin/tenants/tenant/",
        "/admin/tenants/userrole/",
        "/admin/devices/device/",
        "/admin/devices/device/add/",
        "/admin/devices/device/?is_active__exact=1&protocol__exact=teltonika",
    ],
)
def test_operator_pages_render(operator, tenant_a, url):
    services.create_device(tenant=tenant_a.tenant, name="Any")

    assert operator.get(url).status_code == 200


def test_the_tenant_page_shows_its_members_inline(operator, tenant_a):
    page = operator.get(f"/admin/tenants/tenant/{tenant_a.tenant.pk}/change/").content.decode()

    assert "admin@alpha.example.com" in page
    assert "viewer@alpha.example.com" in page


def test_the_user_page_shows_their_tenant_roles_inline(operator, tenant_a):
    page = operator.get(f"/admin/accounts/user/{tenant_a.manager.pk}/change/").content.decode()

    assert tenant_a.tenant.name in page


def test_an_operator_queues_a_command_in_the_admin(operator, tenant_a, superuser):
    from apps.devices.models import CommandStatus, DeviceCommand

    device, _ = services.create_device(tenant=tenant_a.tenant, name="Tracker")
    form = operator.get("/admin/devices/devicecommand/add/")
    expires_at = form.context["adminform"].form.initial["expires_at"]

    response = operator.post(
        "/admin/devices/devicecommand/add/",
        {
            "device": device.pk,
            "text": "getinfo",
            "expires_at_0": expires_at.strftime("%Y-%m-%d"),
            "expires_at_1": expires_at.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    command = DeviceCommand.objects.get()
    assert (command.tenant_id, command.status, command.created_by) == (
        tenant_a.tenant.pk,
        CommandStatus.QUEUED,
        superuser,
    )
    page = operator.get(f"/admin/devices/devicecommand/{command.pk}/change/")
    assert page.status_code == 200
    assert 'name="text"' not in page.content.decode()


def test_sessions_are_listed_and_read_only(operator, tenant_a):
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Tracker")
    session_id = services.open_device_session(
        device.pk, tenant_a.tenant.pk, "teltonika-tcp", "10.0.0.9:4100"
    )

    listing = operator.get("/admin/devices/devicesession/")

    assert listing.status_code == 200
    assert "10.0.0.9:4100" in listing.content.decode()
    assert operator.get("/admin/devices/devicesession/add/").status_code == 403
    assert session_id


def device_events(device_id: int) -> list[tuple[str, int | None, dict[str, Any]]]:
    return [
        (event.type, event.user_id, event.payload)
        for event in AuditEvent.objects.filter(device_id=device_id).order_by("id")
    ]


def test_changes_made_in_the_admin_are_in_the_audit_trail(
    operator, superuser, tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(
            "/admin/devices/device/add/",
            {
                "tenant": tenant_a.tenant.pk,
                "name": "Audited",
                "protocol": "http",
                "model": "",
                "is_active": "on",
            },
        )
    device = Device.objects.get(name="Audited")
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(
            f"/admin/devices/device/{device.pk}/change/",
            {
                "tenant": tenant_a.tenant.pk,
                "name": "Audited",
                "protocol": "http",
                "model": "FMC650",
                "is_active": "on",
            },
        )
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(f"/admin/devices/device/{device.pk}/delete/", {"post": "yes"})

    assert not Device.objects.filter(pk=device.pk).exists()
    events = device_events(device.pk)
    assert [(kind, user) for kind, user, _ in events] == [
        ("device.created", superuser.pk),
        ("device.updated", superuser.pk),
        ("device.deleted", superuser.pk),
    ]
    assert events[1][2]["fields"] == ["model"]


def test_the_admin_refuses_a_device_past_the_tenants_quota(operator, tenant_a):
    tenant_a.tenant.max_devices = 1
    tenant_a.tenant.save()
    services.create_device(tenant=tenant_a.tenant, name="The only one")

    response = operator.post(
        "/admin/devices/device/add/",
        {"tenant": tenant_a.tenant.pk, "name": "One too many", "protocol": "http", "model": ""},
    )

    assert response.status_code == 200
    assert "may have at most 1 devices" in response.content.decode()
    assert not Device.objects.filter(name="One too many").exists()
