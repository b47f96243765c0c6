"""Device tokens, webhook tokens and connector secrets never appear whole in logs or admin.

The logs are captured from every logger at DEBUG while devices and connectors are created,
rotated, used and refused through the API, the admin and ingest, and each record is
rendered by both of the project's formatters (text and JSON), fields included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter
from rest_framework.test import APIClient

from apps.connectors.models import Connector, ConnectorCall, ConnectorLog
from apps.connectors.tests.conftest import Target, target  # noqa: F401  (the fixture)
from apps.devices.models import Device
from quantumfleet.logging import KeyValueFormatter

pytestmark = pytest.mark.django_db

SECRET = "connector-secret-4f1c9a77e2"
MAPPING = {"device": "imei", "ts": "time", "data": "values"}
IMEI = "356307042441099"


@pytest.fixture(autouse=True)
def every_log_record(caplog: pytest.LogCaptureFixture) -> None:
    """Every logger's records down to DEBUG are kept for the test to read."""
    caplog.set_level(logging.DEBUG)


def rendered(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record of the test, as the text and the JSON formatter write it, and raw."""
    text = KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    as_json = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    lines = []
    for record in caplog.records:
        lines += [text.format(record), as_json.format(record), repr(vars(record))]
    return lines


def assert_nowhere(secret: str, lines: list[str]) -> None:
    assert secret
    found = [line for line in lines if secret in line]
    assert not found, f"{secret[:4]}… is in the logs: {found[:3]}"


@pytest.fixture(autouse=True)
def local_targets(settings: Any) -> None:
    settings.CONNECTOR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.CONNECTOR_RETRY_BACKOFF_SECONDS = 0.01
    settings.CONNECTOR_RETRY_BACKOFF_MAX_SECONDS = 0.02
    settings.CONNECTOR_MAX_ATTEMPTS = 2


def ingest(token: str, second: int = 0):
    body = {"token": token, "ts": f"2025-01-01T12:00:{second:02d}Z", "data": {"speed": 1}}
    return APIClient().post("/ingest/http", json.dumps(body), content_type="application/json")


class TestLogs:
    def test_device_tokens_are_not_logged_on_create_rotate_and_ingest(
        self, caplog, client_for, tenant_a, operator
    ):
        manager = client_for(tenant_a.manager)
        created = manager.post("/devices", {"name": "Van", "external_id": IMEI}, format="json")
        first = created.json()["token"]
        device_id = created.json()["id"]
        assert ingest(first, 1).status_code == 201
        rotated = manager.post(f"/devices/{device_id}/rotate-token").json()["token"]
        assert ingest(first, 2).status_code == 401
        assert ingest(rotated, 3).status_code == 201
        bare = [{"ts": "2025-01-01T12:00:04Z", "data": {"speed": 2}}]
        header = APIClient().post(
            "/ingest/http",
            json.dumps(bare),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Device {rotated}",
        )
        assert header.status_code == 201
        teltonika = APIClient().post(
            "/ingest/teltonika/ingest",
            {"token": rotated, "timestamp": 1_735_732_800_000, "gps": {"lat": 1, "lon": 2}},
            format="json",
        )
        assert teltonika.status_code == 201
        manager.patch(f"/devices/{device_id}", {"is_active": False}, format="json")
        assert ingest(rotated, 5).status_code == 403
        # The admin's own ways to make tokens: a new device and the rotate action.
        operator.post(
            "/admin/devices/device/add/",
            {"tenant": tenant_a.tenant.pk, "name": "Admin van", "protocol": "http"},
        )
        admin_device = Device.objects.get(name="Admin van")
        operator.post(
            "/admin/devices/device/",
            {"action": "rotate_tokens", "_selected_action": [device_id, admin_device.pk]},
        )

        lines = rendered(caplog)
        assert any("device.created" in line for line in lines)
        assert any("device.token_rotated" in line for line in lines)
        for token in (first, rotated):
            assert_nowhere(token, lines)
            # Recognisable by its prefix, as the API and admin show it, at most.
            assert_nowhere(token[:12], lines)

    def test_connector_secrets_are_not_logged_when_calling_out(
        self,
        caplog,
        client_for,
        tenant_a,
        target,  # noqa: F811  (the connectors' local HTTP target)
        django_capture_on_commit_callbacks,
    ):
        url = target.answer("/alerts", (500, {"error": "busy"}), (200, {"ok": True}))
        manager = client_for(tenant_a.manager)
        connector = manager.post(
            "/connectors",
            {
                "name": "alerts",
                "kind": "outbound_http",
                "config": {"url": url, "auth": "bearer", "timeout": 2},
                "secret": SECRET,
            },
            format="json",
        ).json()

        with django_capture_on_commit_callbacks(execute=True):
            call = manager.post(
                f"/connectors/{connector['id']}/call", {"payload": {"echo": SECRET}}, format="json"
            )
        assert call.status_code == 202

        received = target.calls_to("/alerts")
        assert len(received) == 2
        assert received[0].headers["Authorization"] == f"Bearer {SECRET}"
        assert ConnectorCall.objects.get().status == "succeeded"
        lines = rendered(caplog)
        assert any("connector.call_attempt" in line for line in lines)
        assert_nowhere(SECRET, lines)

    def test_webhook_tokens_and_keys_are_not_logged_when_called(self, caplog, client_for, tenant_a):
        manager = client_for(tenant_a.manager)
        manager.post("/devices", {"name": "Van", "external_id": IMEI}, format="json")
        created = manager.post(
            "/connectors",
            {
                "name": "inbound",
                "kind": "webhook",
                "config": {"mapping": MAPPING},
                "secret": SECRET,
            },
            format="json",
        ).json()
        token = created["webhook_token"]
        body = json.dumps({"imei": IMEI, "time": "2025-01-01T12:00:00Z", "values": {"v": 1}})
        signature = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()

        client = APIClient()
        signed = client.post(
            f"/hooks/{token}", body, content_type="application/json", HTTP_X_SIGNATURE=signature
        )
        unsigned = client.post(f"/hooks/{token}", body, content_type="application/json")
        unmappable = client.post(
            f"/hooks/{token}",
            json.dumps({"time": "x"}),
            content_type="application/json",
            HTTP_X_SIGNATURE="sha256="
            + hmac.new(SECRET.encode(), b'{"time": "x"}', hashlib.sha256).hexdigest(),
        )
        rotated = manager.post(f"/connectors/{created['id']}/rotate-token").json()
        stale = client.post(f"/hooks/{token}", body, content_type="application/json")

        assert [signed.status_code, unsigned.status_code, unmappable.status_code] == [200, 401, 400]
        assert stale.status_code == 404
        lines = rendered(caplog)
        assert any("/hooks/" in line for line in lines), "refused webhook calls are logged"
        for secret in (token, rotated["webhook_token"], SECRET):
            assert_nowhere(secret, lines)


@pytest.fixture
def device_and_connectors(tenant_a, target: Target) -> dict[str, Any]:  # noqa: F811
    from apps.connectors import services as connector_services
    from apps.devices import services as device_services

    device, token = device_services.create_device(tenant=tenant_a.tenant, name="Van")
    outbound, _ = connector_services.save_connector(
        tenant_a.tenant,
        name="alerts",
        kind="outbound_http",
        config={"url": target.url("/alerts"), "auth": "bearer"},
        secret=SECRET,
    )
    webhook, webhook_token = connector_services.save_connector(
        tenant_a.tenant, name="inbound", kind="webhook", config={"mapping": MAPPING}, secret=SECRET
    )
    call = ConnectorCall.objects.create(tenant=tenant_a.tenant, connector=outbound, context={})
    connector_services.attempt_call(call.pk, 1)
    return {
        "device": device,
        "device_token": token,
        "outbound": outbound,
        "webhook": webhook,
        "webhook_token": webhook_token,
        "call": call,
        "log": ConnectorLog.objects.filter(connector=outbound).first(),
    }


class TestAdminPages:
    def test_device_pages_show_the_token_prefix_only(self, operator, device_and_connectors):
        device = device_and_connectors["device"]
        token = device_and_connectors["device_token"]

        for url in ["/admin/devices/device/", f"/admin/devices/device/{device.pk}/change/"]:
            page = operator.get(url)
            assert page.status_code == 200, url
            html = page.content.decode()
            assert device.token_prefix in html, url
            assert token not in html, url
            assert token[: len(device.token_prefix) + 1] not in html, url

    def test_connector_pages_never_show_a_secret_or_webhook_token(
        self, operator, device_and_connectors
    ):
        objects = device_and_connectors
        urls = [
            "/admin/connectors/connector/",
            f"/admin/connectors/connector/{objects['outbound'].pk}/change/",
            f"/admin/connectors/connector/{objects['webhook'].pk}/change/",
            "/admin/connectors/connectorcall/",
            f"/admin/connectors/connectorcall/{objects['call'].pk}/change/",
            "/admin/connectors/connectorlog/",
            f"/admin/connectors/connectorlog/{objects['log'].pk}/change/",
        ]
        assert objects["log"].request_excerpt, "the log row records the request"

        for url in urls:
            page = operator.get(url)
            assert page.status_code == 200, url
            html = page.content.decode()
            assert SECRET not in html, url
            assert objects["webhook_token"] not in html, url
        change = operator.get(urls[1]).content.decode()
        assert "••••••" in change


def test_the_secrets_really_were_used(device_and_connectors, target: Target) -> None:  # noqa: F811
    """The pages above were searched for secrets that exist and were sent."""
    assert Connector.objects.get(name="alerts").secret == SECRET
    assert target.calls_to("/alerts")[0].headers["Authorization"] == f"Bearer {SECRET}"
