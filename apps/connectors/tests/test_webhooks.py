"""POST /hooks/{token}: mapping into telemetry, signatures, bodies that cannot be mapped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.connectors.models import ConnectorLog, LogStatus
from apps.connectors.outbound import sign
from apps.connectors.tests.conftest import DEVICE_TOKEN, IMEI, make_webhook
from apps.devices import services as device_services
from apps.telemetry.models import Telemetry

pytestmark = pytest.mark.django_db

MAPPING = {
    "items": "records",
    "device": "imei",
    "ts": "time",
    "fields": {"gps.speed": "vehicle.kmh", "gps.lat": "pos.0", "gps.lon": "pos.1"},
}
BODY = {
    "records": [
        {
            "imei": IMEI,
            "time": "2025-01-01T12:00:00Z",
            "vehicle": {"kmh": 81.26},
            "pos": [-33.4, -70.6],
        },
        {
            "imei": IMEI,
            "time": "2025-01-01T12:01:00Z",
            "vehicle": {"kmh": 90.0},
            "pos": [-33.5, -70.7],
        },
    ]
}


def post(anonymous: Any, token: str, body: Any, **headers: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return anonymous.generic("POST", f"/hooks/{token}", raw, "application/json", **headers)


def test_it_maps_a_body_into_telemetry_and_logs_the_call(anonymous, tenant_a, device):
    _, token = make_webhook(tenant_a.tenant, MAPPING, transforms={"gps.speed": [{"round": 0}]})

    response = post(anonymous, token, BODY)

    assert response.status_code == 200
    assert response.json() == {"stored": 2, "duplicates": 0}
    stored = list(Telemetry.objects.order_by("ts").values_list("device_id", "data"))
    assert stored == [
        (device.pk, {"gps": {"speed": 81, "lat": -33.4, "lon": -70.6}}),
        (device.pk, {"gps": {"speed": 90.0, "lat": -33.5, "lon": -70.7}}),
    ]
    log = ConnectorLog.objects.get()
    assert (log.direction, log.status, log.http_status, log.stored) == (
        "inbound",
        "succeeded",
        200,
        2,
    )


def test_a_resend_is_counted_as_duplicates(anonymous, tenant_a, device):
    _, token = make_webhook(tenant_a.tenant, MAPPING)
    post(anonymous, token, BODY)

    response = post(anonymous, token, BODY)

    assert response.json() == {"stored": 0, "duplicates": 2}


def test_it_finds_the_device_by_token_and_uses_now_without_a_time(anonymous, tenant_a, device):
    _, token = make_webhook(
        tenant_a.tenant, {"device": "key", "device_by": "token", "data": "payload"}
    )

    response = post(anonymous, token, {"key": DEVICE_TOKEN, "payload": {"fuel": 40}})

    assert response.status_code == 200
    assert Telemetry.objects.get().data == {"fuel": 40}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        ({"rows": []}, "records"),
        ({"records": {"imei": IMEI}}, "records"),
        ({"records": [{"time": "2025-01-01T12:00:00Z"}]}, "records.0.imei"),
        ({"records": [{"imei": IMEI, "vehicle": {"kmh": 1}, "pos": [1, 2]}]}, "records.0.time"),
        (
            {
                "records": [
                    {"imei": IMEI, "time": "yesterday", "vehicle": {"kmh": 1}, "pos": [1, 2]}
                ]
            },
            "records.0.time",
        ),
        (
            {"records": [{"imei": IMEI, "time": "2025-01-01T12:00:00Z", "pos": [1, 2]}]},
            "records.0.vehicle.kmh",
        ),
        (
            {
                "records": [
                    {
                        "imei": "999",
                        "time": "2025-01-01T12:00:00Z",
                        "vehicle": {"kmh": 1},
                        "pos": [1, 2],
                    }
                ]
            },
            "records.0.imei",
        ),
    ],
)
def test_a_body_that_cannot_be_mapped_is_a_400_naming_what_is_missing(
    anonymous, tenant_a, device, body, field
):
    _, token = make_webhook(tenant_a.tenant, MAPPING)
    # The first record is valid: the bad one must not let it through.
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        body = {"records": [BODY["records"][0], *body["records"]]}
        field = field.replace("records.0", "records.1")

    response = post(anonymous, token, body)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Telemetry.objects.exists()
    log = ConnectorLog.objects.get()
    assert (log.status, log.http_status) == (LogStatus.REJECTED, 400)
    assert field in log.error


def test_a_body_with_a_nul_byte_is_refused_and_logged_with_it_marked(anonymous, tenant_a, device):
    _, token = make_webhook(tenant_a.tenant, MAPPING)

    response = post(anonymous, token, b'{"records": "\x00"}')

    assert response.status_code == 400
    log = ConnectorLog.objects.get()
    assert (log.status, log.http_status) == (LogStatus.REJECTED, 400)
    assert log.request_excerpt == '{"records": "\ufffd"}'


def test_a_device_of_another_tenant_is_not_found(anonymous, tenant_a, tenant_b, device):
    other, _ = device_services.create_device(
        tenant=tenant_b.tenant, name="B", external_id="111111111111111"
    )
    _, token = make_webhook(tenant_a.tenant, {"device": "imei"})

    response = post(anonymous, token, {"imei": other.external_id, "speed": 1})

    assert response.status_code == 400
    assert not Telemetry.objects.exists()


def test_a_signed_webhook_needs_the_right_signature(anonymous, tenant_a, device):
    secret = "webhook-signing-key"
    _, token = make_webhook(tenant_a.tenant, {"device": "imei"}, secret=secret)
    raw = json.dumps({"imei": IMEI, "speed": 3}).encode()

    unsigned = post(anonymous, token, raw)
    wrong = post(anonymous, token, raw, HTTP_X_SIGNATURE=sign("another-key", raw))
    right = post(anonymous, token, raw, HTTP_X_SIGNATURE=sign(secret, raw))

    assert (unsigned.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert Telemetry.objects.count() == 1
    assert list(ConnectorLog.objects.order_by("id").values_list("http_status", flat=True)) == [
        401,
        401,
        200,
    ]


def test_an_unknown_token_is_404(anonymous, tenant_a, device):
    make_webhook(tenant_a.tenant, {"device": "imei"})

    response = post(anonymous, "x" * 43, {"imei": IMEI})

    assert response.status_code == 404
    assert not ConnectorLog.objects.exists()


def test_a_rotated_token_stops_working(client_for, anonymous, tenant_a, device):
    connector, token = make_webhook(tenant_a.tenant, {"device": "imei"})

    rotated = client_for(tenant_a.manager).post(f"/connectors/{connector.pk}/rotate-token")

    assert post(anonymous, token, {"imei": IMEI, "a": 1}).status_code == 404
    assert (
        post(anonymous, rotated.json()["webhook_token"], {"imei": IMEI, "a": 1}).status_code == 200
    )
