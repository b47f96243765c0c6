"""The /connectors routes: create or update by name, validation, secrets, roles."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.connectors.models import Connector, ConnectorKind
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

OUTBOUND: dict[str, Any] = {
    "name": "overspeed alerts",
    "kind": "outbound_http",
    "config": {"url": "https://hooks.example.com/fleet", "auth": "bearer"},
    "secret": "s3cr3t-bearer-value",
}


def test_it_creates_then_updates_by_name_as_the_original_did(client_for, tenant_a):
    client = client_for(tenant_a.manager)

    created = client.post("/connectors", OUTBOUND, format="json")
    again = client.post(
        "/connectors",
        {**OUTBOUND, "config": {**OUTBOUND["config"], "method": "PUT"}},
        format="json",
    )

    assert created.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    assert again.json()["config"]["method"] == "PUT"
    assert Connector.objects.count() == 1


def test_it_never_returns_the_secret(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    created = client.post("/connectors", OUTBOUND, format="json").json()

    listed = client.get("/connectors").json()
    detail = client.get(f"/connectors/{created['id']}").json()

    for body in (created, listed[0], detail):
        assert "secret" not in body
        assert body["has_secret"] is True
        assert OUTBOUND["secret"] not in str(body)


def test_it_keeps_the_secret_when_an_update_leaves_it_out(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    created = client.post("/connectors", OUTBOUND, format="json").json()

    client.patch(f"/connectors/{created['id']}", {"is_active": False}, format="json")

    assert Connector.objects.get().secret == OUTBOUND["secret"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.url"),
        ({"url": "ftp://example.com/x"}, "config.url"),
        ({"url": "https://example.com", "method": "BREW"}, "config.method"),
        ({"url": "https://example.com", "timeout": 0}, "config.timeout"),
        ({"url": "https://example.com", "auth": "basic"}, "config.username"),
        (
            {"url": "https://example.com", "headers": {"Authorization": "x"}},
            "config.headers.Authorization",
        ),
        ({"url": "https://example.com", "colour": "red"}, "config.colour"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "config.url"),
        ({"url": "http://127.0.0.1:8000/admin/"}, "config.url"),
        ({"url": "http://10.1.2.3/"}, "config.url"),
    ],
)
def test_a_bad_outbound_config_is_a_400_naming_the_field(
    client_for, tenant_a, settings, config, field
):
    settings.CONNECTOR_ALLOWED_NETWORKS = []
    body = {"name": "x", "kind": "outbound_http", "config": config}

    response = client_for(tenant_a.manager).post("/connectors", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Connector.objects.exists()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.mapping"),
        ({"mapping": {"device_by": "imei"}}, "config.mapping.device"),
        ({"mapping": {"device": "imei", "device_by": "colour"}}, "config.mapping.device_by"),
        (
            {"mapping": {"device": "imei"}, "transforms": {"speed": [{"round": -1}]}},
            "config.transforms.speed.0.round",
        ),
        (
            {"mapping": {"device": "imei"}, "transforms": {"speed": [{"clamp": [5, 1]}]}},
            "config.transforms.speed.0.clamp",
        ),
        (
            {"mapping": {"device": "imei"}, "transforms": {"speed": [{"cube": 3}]}},
            "config.transforms.speed.0",
        ),
    ],
)
def test_a_bad_webhook_config_is_a_400_naming_the_field(client_for, tenant_a, config, field):
    body = {"name": "x", "kind": "webhook", "config": config}

    response = client_for(tenant_a.manager).post("/connectors", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_a_new_webhook_shows_its_token_once(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    body = {"name": "in", "kind": "webhook", "config": {"mapping": {"device": "imei"}}}

    created = client.post("/connectors", body, format="json").json()
    shown_again = client.get(f"/connectors/{created['id']}").json()

    assert len(created["webhook_token"]) > 30
    assert created["webhook_token"].startswith(created["webhook_token_prefix"])
    assert "webhook_token" not in shown_again
    assert Connector.objects.get().webhook_token_hash != created["webhook_token"]


def test_a_collector_is_due_at_once_after_it_is_created(client_for, tenant_a):
    body = {
        "name": "feed",
        "kind": "collector",
        "config": {"url": "https://feed.example.com/v1", "mapping": {"device": "id"}},
    }

    created = client_for(tenant_a.manager).post("/connectors", body, format="json")

    assert created.status_code == 201
    assert created.json()["config"]["interval_seconds"] == 60
    assert Connector.objects.get().next_poll_at is not None


def test_viewers_read_but_do_not_write(client_for, tenant_a):
    manager = client_for(tenant_a.manager)
    created = manager.post("/connectors", OUTBOUND, format="json").json()
    viewer = client_for(tenant_a.member(Role.VIEWER))

    assert viewer.get("/connectors").status_code == 200
    assert viewer.post("/connectors", {**OUTBOUND, "name": "v"}, format="json").status_code == 403
    assert viewer.post(f"/connectors/{created['id']}/call", {}, format="json").status_code == 403
    assert viewer.delete(f"/connectors/{created['id']}").status_code == 403


def test_a_connector_is_deleted_with_its_logs(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    created = client.post("/connectors", OUTBOUND, format="json").json()

    response = client.delete(f"/connectors/{created['id']}")

    assert response.status_code == 204
    assert not Connector.objects.exists()


def test_only_outbound_connectors_can_be_called(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    body = {"name": "in", "kind": ConnectorKind.WEBHOOK, "config": {"mapping": {"device": "imei"}}}
    created = client.post("/connectors", body, format="json").json()

    response = client.post(f"/connectors/{created['id']}/call", {}, format="json")

    assert response.status_code == 400
    assert "kind" in response.json()["errors"]


def test_changes_are_on_the_audit_trail_without_the_secret(
    client_for, tenant_a, django_capture_on_commit_callbacks
):
    client = client_for(tenant_a.manager)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/connectors", OUTBOUND, format="json").json()
        client.patch(f"/connectors/{created['id']}", {"is_active": False}, format="json")
        client.delete(f"/connectors/{created['id']}")

    events = AuditEvent.objects.filter(type__startswith="connector.").order_by("id")
    assert [event.type for event in events] == [
        "connector.created",
        "connector.updated",
        "connector.deleted",
    ]
    assert all(event.user_id == tenant_a.manager.pk for event in events)
    assert OUTBOUND["secret"] not in str([event.payload for event in events])


def test_a_connector_that_becomes_a_webhook_shows_its_new_token_once(client_for, tenant_a):
    client = client_for(tenant_a.manager)
    created = client.post("/connectors", OUTBOUND, format="json").json()
    change = {"kind": "webhook", "config": {"mapping": {"device": "imei"}}}

    changed = client.patch(f"/connectors/{created['id']}", change, format="json")

    assert changed.status_code == 200
    assert changed.json()["webhook_token"].startswith(changed.json()["webhook_token_prefix"])
