"""Bad input over HTTP: every malformed body, string and timestamp gets a clear 4xx, and
nothing is stored.

The matrix runs through the ingest endpoint (devices) and the API (people): oversized
and unparseable bodies, nesting, NUL characters, huge strings and odd timestamps. Where a
form is accepted on purpose (an ISO time without an offset, a week date) the test says so
and docs/hardening.md lists it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.devices.models import Device
from apps.telemetry.models import DeviceState, Telemetry

from .conftest import DEVICE_TOKEN

pytestmark = pytest.mark.django_db

BODY_LIMIT = 4096


def post_raw(client: APIClient, body: bytes, content_type: str = "application/json") -> Any:
    return api_post(client, "/ingest/http", body, content_type)


def point(ts: Any = "2025-01-01T12:00:00Z", data: Any = None) -> bytes:
    body: dict[str, Any] = {"token": DEVICE_TOKEN, "data": {"x": 1} if data is None else data}
    if ts is not ...:
        body["ts"] = ts
    return json.dumps(body).encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_nothing_stored() -> None:
    assert Telemetry.objects.count() == 0
    assert DeviceState.objects.filter(last_ts__isnull=False).count() == 0


def assert_error(response: Any, status: int, field: str | None = None, code: str = "") -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["detail"]
    if field is not None:
        assert list(body["errors"]) == [field], body
    if code:
        assert body["code"] == code, body


# Bodies that cannot be read as JSON, or are too large: a 4xx about the body itself.
UNREADABLE_BODIES = [
    pytest.param(b"", "parse_error", id="empty"),
    pytest.param(b"{", "parse_error", id="truncated"),
    pytest.param(b'{"token": "t", "data": {"x": "\xff\xfe"}}', "parse_error", id="invalid-utf8"),
    pytest.param(b"\xef\xbb\xbf" + point(), "parse_error", id="utf8-bom"),
    pytest.param(point().replace(b"\x78", b"\x00", 1), "parse_error", id="raw-nul-byte"),
    pytest.param(b'{"token": "t", "data": {"x": NaN}}', "parse_error", id="nan-literal"),
    pytest.param(b'{"token": "t", "data": {"x": Infinity}}', "parse_error", id="infinity-literal"),
    pytest.param(
        f'{{"token": "{DEVICE_TOKEN}", "data": {{"x": {nested(10_000)}}}}}'.encode(),
        "parse_error",
        id="nested-10000-in-data",
    ),
    pytest.param(nested(10_000).encode(), "parse_error", id="nested-10000-body"),
    pytest.param(b"{" * 100_000, "parse_error", id="100000-open-braces"),
    pytest.param(b'"just a string"', "invalid", id="json-string"),
    pytest.param(b"12", "invalid", id="json-number"),
    pytest.param(b"null", "invalid", id="json-null"),
]


@pytest.mark.parametrize(("body", "code"), UNREADABLE_BODIES)
def test_an_unreadable_body_is_a_400_and_stores_nothing(anonymous, device, body, code):
    response = post_raw(anonymous, body)

    assert_error(response, 400, code=code)
    assert_nothing_stored()


def test_a_body_over_the_limit_is_a_413(anonymous, device, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    body = point(data={"blob": "x" * BODY_LIMIT})

    response = post_raw(anonymous, body)

    assert_error(response, 413, code="payload_too_large")
    assert_nothing_stored()


def test_a_body_just_under_the_limit_is_stored(anonymous, device, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    body = point(data={"blob": ""})
    body = point(data={"blob": "x" * (BODY_LIMIT - len(body))})
    assert len(body) == BODY_LIMIT

    assert post_raw(anonymous, body).status_code == 201


def test_a_body_of_another_media_type_is_a_415(anonymous, device):
    assert_error(post_raw(anonymous, point(), "text/plain"), 415)
    assert_nothing_stored()


# Readable JSON with a bad value: a 400 naming the field.
BAD_VALUES = [
    pytest.param({"x": "a\u0000b"}, "data", id="nul-in-value"),
    pytest.param({"a\u0000": 1}, "data", id="nul-in-key"),
    pytest.param({"deep": {"er": ["\u0000"]}}, "data", id="nul-deep-inside"),
    pytest.param({"x": "y" * 70_000}, "data", id="huge-string-value"),
    pytest.param({"k" * 70_000: 1}, "data", id="huge-key"),
    pytest.param(json.loads(f'{{"x": {nested(300)}}}'), "data", id="nested-300"),
    pytest.param("not an object", "data", id="string-data"),
    pytest.param([1, 2], "data", id="list-data"),
]


@pytest.mark.parametrize(("data", "field"), BAD_VALUES)
def test_a_bad_value_in_data_is_a_400_naming_it(anonymous, device, data, field):
    response = post_raw(anonymous, point(data=data))

    assert_error(response, 400, field)
    assert_nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"token": "t", "data": {"x": "\\ud800"}}', id="lone-surrogate"),
        pytest.param(b'{"token": "t", "data": {"x": 1e400}}', id="number-out-of-range"),
    ],
)
def test_json_a_database_cannot_keep_is_refused(anonymous, device, body):
    body = body.replace(b'"t"', json.dumps(DEVICE_TOKEN).encode())

    response = post_raw(anonymous, body)

    assert 400 <= response.status_code < 500, response.content
    assert response.json()["detail"]
    assert_nothing_stored()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(DEVICE_TOKEN + "\u0000", id="nul-after-token"),
        pytest.param("\u0000", id="nul-only"),
        pytest.param("t" * 1_000_000, id="a-megabyte"),
        pytest.param("\u00e9\u4e2d\U0001f600", id="non-ascii"),
    ],
)
def test_an_odd_token_is_a_401_and_stores_nothing(anonymous, device, token):
    body = json.dumps({"token": token, "data": {"x": 1}}).encode()

    response = post_raw(anonymous, body)

    assert_error(response, 401, code="invalid_device_token")
    assert_nothing_stored()


@pytest.mark.parametrize(
    "token",
    [pytest.param(123, id="number"), pytest.param(["a"], id="list"), pytest.param({}, id="dict")],
)
def test_a_token_that_is_not_a_string_is_a_400(anonymous, device, token):
    body = json.dumps({"token": token, "data": {"x": 1}}).encode()

    assert_error(post_raw(anonymous, body), 400, "token")
    assert_nothing_stored()


# Timestamps: refused with a 400 on "ts" (or "points.N.ts"), or accepted as documented.
REFUSED_TIMESTAMPS = [
    pytest.param(1_735_732_800, id="epoch-seconds-number"),
    pytest.param(1_735_732_800_000, id="epoch-ms-number"),
    pytest.param(1.7357328e9, id="epoch-float"),
    pytest.param("1735732800", id="epoch-seconds-string"),
    pytest.param("1735732800000", id="epoch-ms-string"),
    pytest.param("NaN", id="nan"),
    pytest.param("nan", id="nan-lower"),
    pytest.param("Infinity", id="infinity"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("0000-01-01T00:00:00Z", id="year-0"),
    pytest.param("0001-01-01T00:00:00Z", id="year-1"),
    pytest.param("0001-01-01T00:00:00+01:00", id="year-1-east-of-utc"),
    pytest.param("9999-12-31T23:59:59Z", id="year-9999"),
    pytest.param("9999-12-31T23:59:59-01:00", id="year-9999-west-of-utc"),
    pytest.param("10000-01-01T00:00:00Z", id="year-10000"),
    pytest.param("+012025-01-01T00:00:00Z", id="expanded-year"),
    pytest.param("-2025-01-01T00:00:00Z", id="negative-year"),
    pytest.param("2016-12-31T23:59:60Z", id="leap-second"),
    pytest.param("2025-01-01T24:00:00Z", id="hour-24"),
    pytest.param("2025-02-30T00:00:00Z", id="february-30"),
    pytest.param("2025-01-01T12:00:00+24:00", id="offset-24h"),
    pytest.param("1970-01-01T00:00:00Z", id="epoch-zero"),
    pytest.param("1999-12-31T23:59:59Z", id="before-2000"),
    pytest.param("2100-01-01T00:00:00Z", id="far-future"),
    pytest.param("2025-01-01T12:00:00Z\u0000", id="nul-after"),
    pytest.param("2025-01-01T12:00:00Z" + " " * 10_000 + "x", id="huge"),
    pytest.param("yesterday", id="words"),
    pytest.param("01/02/2025 12:00", id="locale-format"),
    pytest.param("Wed, 01 Jan 2025 12:00:00 GMT", id="http-date"),
    pytest.param(True, id="boolean"),
    pytest.param({"$date": "2025-01-01"}, id="object"),
    pytest.param(["2025-01-01T12:00:00Z"], id="list"),
]


@pytest.mark.parametrize("ts", REFUSED_TIMESTAMPS)
def test_an_odd_timestamp_is_a_400_on_ts(anonymous, device, ts):
    response = post_raw(anonymous, point(ts=ts))

    assert_error(response, 400, "ts")
    assert_nothing_stored()


@pytest.mark.parametrize("ts", REFUSED_TIMESTAMPS[:12])
def test_an_odd_timestamp_in_a_batch_names_its_point(anonymous, device, ts):
    body = {
        "token": DEVICE_TOKEN,
        "points": [
            {"ts": "2025-01-01T12:00:00Z", "data": {"n": 0}},
            {"ts": ts, "data": {"n": 1}},
        ],
    }

    response = post_raw(anonymous, json.dumps(body).encode())

    assert_error(response, 400, "points.1.ts")
    assert_nothing_stored()


T_UTC = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ACCEPTED_TIMESTAMPS = [
    pytest.param("2025-01-01T12:00:00Z", T_UTC, id="utc-z"),
    pytest.param("2025-01-01T12:00:00", T_UTC, id="no-zone-read-as-utc"),
    pytest.param("2025-01-01T09:00:00-03:00", T_UTC, id="negative-offset"),
    pytest.param("2025-01-01T17:45:00+05:45", T_UTC, id="odd-offset"),
    pytest.param("2025-01-01 12:00:00+00:00", T_UTC, id="space-separator"),
    pytest.param("2025-01-01T12:00:00.000000001Z", T_UTC, id="nanoseconds-cut-to-micro"),
    pytest.param("  2025-01-01T12:00:00Z  ", T_UTC, id="surrounding-spaces"),
    pytest.param("20250101T120000Z", T_UTC, id="basic-format"),
    pytest.param("2025-01-01", T_UTC.replace(hour=0), id="date-only"),
    pytest.param("2025-W01-3", T_UTC.replace(hour=0), id="week-date"),
    pytest.param("2025-001", None, id="ordinal-date"),
]


@pytest.mark.parametrize(("ts", "stored_at"), ACCEPTED_TIMESTAMPS)
def test_documented_timestamp_forms_are_accepted(anonymous, device, ts, stored_at):
    response = post_raw(anonymous, point(ts=ts))

    if stored_at is None:
        # Not read by Python's ISO parser: refused like any other unreadable time.
        assert_error(response, 400, "ts")
        return
    assert response.status_code == 201, response.content
    assert Telemetry.objects.get(device=device).ts == stored_at


def test_a_time_within_the_day_ahead_allowance_is_accepted(anonymous, device):
    ahead = (timezone.now() + timedelta(hours=23)).isoformat()

    assert post_raw(anonymous, point(ts=ahead)).status_code == 201


def test_an_integer_beyond_64_bits_is_kept_as_a_double(anonymous, device):
    # As JSON parsers in browsers do: JSON numbers are doubles, so no digit is refused.
    body = point(data={"x": 1}).replace(b'"x": 1', b'"x": 123456789012345678901234567890')

    assert post_raw(anonymous, body).status_code == 201
    # PostgreSQL's jsonb reads it back as the integer of the double's digits.
    assert float(Telemetry.objects.get(device=device).data["x"]) == 1.2345678901234568e29


def test_a_null_ts_takes_the_arrival_time(anonymous, device):
    response = post_raw(anonymous, point(ts=None))

    assert response.status_code == 201
    stored = Telemetry.objects.get(device=device)
    assert abs(stored.ts - stored.received_at) < timedelta(seconds=5)


def test_one_bad_point_of_a_batch_stores_none_of_it(anonymous, device):
    points = [
        {"ts": f"2025-01-01T12:00:{second:02d}Z", "data": {"n": second}} for second in range(5)
    ]
    points[3]["data"] = {"bad": "\u0000"}

    response = post_raw(anonymous, json.dumps({"token": DEVICE_TOKEN, "points": points}).encode())

    assert_error(response, 400, "points.3.data")
    assert_nothing_stored()


# The API used by people: the same rules on its JSON bodies and query strings.


@pytest.fixture
def admin_api(client_for, tenant_a) -> APIClient:
    return client_for(tenant_a.admin, tenant_a.tenant)


def api_post(
    client: APIClient, path: str, body: bytes, content_type: str = "application/json"
) -> Any:
    # Bytes as they are, invalid UTF-8 included (the stubs only name str).
    data: Any = body
    return client.generic("POST", path, data, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param(b'{"name": "a\\u0000b"}', 400, "name", id="nul-in-name"),
        pytest.param(b'{"name": "\xff\xfe"}', 400, None, id="invalid-utf8"),
        pytest.param(nested(10_000).encode(), 400, None, id="nested-10000"),
        pytest.param(b'{"name": ' + nested(10_000).encode() + b"}", 400, None, id="nested-name"),
        pytest.param(json.dumps({"name": "n" * 100_000}).encode(), 400, "name", id="huge-name"),
    ],
)
def test_the_device_api_refuses_bad_bodies(admin_api, body, status, field):
    before = Device.objects.count()

    response = api_post(admin_api, "/devices", body)

    assert_error(response, status, field)
    assert Device.objects.count() == before


def test_the_api_refuses_a_body_over_the_limit(admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    before = Device.objects.count()

    response = api_post(admin_api, "/devices", json.dumps({"name": "n" * BODY_LIMIT}).encode())

    assert_error(response, 413)
    assert Device.objects.count() == before


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "",
        "1735732800",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "2016-12-31T23:59:60Z",
        "2025-01-01T12:00:00\u0000",
        "x" * 10_000,
    ],
)
@pytest.mark.parametrize("name", ["from", "to"])
def test_the_telemetry_query_refuses_odd_times_naming_the_parameter(admin_api, device, name, value):
    response = admin_api.get("/telemetry/query", {"device_id": device.pk, name: value})

    assert_error(response, 400, name)
