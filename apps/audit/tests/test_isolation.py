"""Events and sessions of one tenant are invisible to every role of another."""

from __future__ import annotations

import pytest

from apps.audit import services
from apps.devices import services as device_services
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign_trail(tenant_b, foreign_device):
    tenant_id = tenant_b.tenant.pk
    event = services.record_event(
        "device.connected",
        tenant_id=tenant_id,
        device_id=foreign_device.pk,
        payload={"note": "Bravo secret"},
    )
    services.record_event("user.login", tenant_id=tenant_id, user_id=tenant_b.viewer.pk)
    device_session = foreign_device.sessions.get()
    user_session = services.refresh_user_session(tenant_id, tenant_b.viewer.pk, None, "")
    return {"event": event, "device_session": device_session, "user_session": user_session}


ROUTES = [
    ("/audit/events", "/audit/events/{event}", Role.MANAGER),
    ("/audit/device-sessions", "/audit/device-sessions/{device_session}", Role.VIEWER),
    ("/audit/user-sessions", "/audit/user-sessions/{user_session}", Role.MANAGER),
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("list_url", "detail_url", "read_role"), ROUTES)
def test_another_tenants_events_and_sessions_are_invisible(
    client_for, tenant_a, foreign_trail, role, list_url, detail_url, read_role
):
    client = client_for(tenant_a.member(role))
    ids = {name: item.pk for name, item in foreign_trail.items()}

    listed = client.get(list_url)
    detail = client.get(detail_url.format(**ids))

    if role.includes(read_role):
        assert (listed.status_code, listed.json()) == (200, [])
        assert detail.status_code == 404
    else:
        assert (listed.status_code, detail.status_code) == (403, 403)
    assert "Bravo" not in listed.content.decode() + detail.content.decode()


@pytest.mark.parametrize("role", list(Role))
def test_the_other_tenant_in_the_header_is_forbidden(client_for, tenant_a, tenant_b, role):
    client = client_for(tenant_a.member(role), tenant=tenant_b.tenant)

    responses = [
        client.get("/audit/events"),
        client.get("/audit/device-sessions"),
        client.post("/audit/events", {"type": "x.y"}, format="json"),
    ]

    assert [response.status_code for response in responses] == [403] * 3


def test_events_cannot_touch_another_tenants_device_sessions(client_for, tenant_a, foreign_device):
    session_id = device_services.open_device_session(
        foreign_device.pk, foreign_device.tenant_id, "tcp", ""
    )

    response = client_for(tenant_a.manager).post(
        "/audit/events",
        {"type": "device.disconnected", "device_id": foreign_device.pk},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["device_id"]
    assert foreign_device.sessions.get(pk=session_id).ended_at is None
