"""Bad MQTT payloads: the HTTP ingest's bad-input matrix through the consumer.

The payload parser refuses what it can see (unreadable JSON, a bad shape, an odd
timestamp) with a reason naming the field; what only the ingest service sees (NUL
characters, huge or too deeply nested data) is refused when the message is stored. Either
way the message is acknowledged, counted as rejected with its reason, and stores nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from apps.telemetry.models import Telemetry
from ingest_daemons.mqtt.payload import BadMessageError, Reason, parse_payload
from ingest_daemons.tests.conftest import MQTT_TOKEN, wait_until

RECEIVED_AT = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def message(ts: Any = "2026-11-03T11:00:00Z", data: Any = None) -> bytes:
    return json.dumps({"ts": ts, "data": {"x": 1} if data is None else data}).encode()


UNREADABLE = [
    pytest.param(b"", Reason.INVALID_JSON, id="empty"),
    pytest.param(b"{", Reason.INVALID_JSON, id="truncated"),
    pytest.param(b'{"data": {"x": "\xff\xfe"}}', Reason.INVALID_JSON, id="invalid-utf8"),
    pytest.param(message().replace(b"x", b"\x00", 1), Reason.INVALID_JSON, id="raw-nul-byte"),
    pytest.param(b'{"data": {"x": NaN}}', Reason.INVALID_JSON, id="nan-literal"),
    pytest.param(b'{"data": {"x": 1e400}}', Reason.INVALID_JSON, id="number-out-of-range"),
    pytest.param(b'{"data": {"x": "\\ud800"}}', Reason.INVALID_JSON, id="lone-surrogate"),
    pytest.param(nested(10_000).encode(), Reason.INVALID_JSON, id="nested-10000"),
    pytest.param(
        b'{"data": {"x": ' + nested(10_000).encode() + b"}}",
        Reason.INVALID_JSON,
        id="nested-10000-in-data",
    ),
    pytest.param(b"{" * 100_000, Reason.INVALID_JSON, id="100000-open-braces"),
    pytest.param(b'"a string"', Reason.BAD_PAYLOAD, id="json-string"),
    pytest.param(b"null", Reason.BAD_PAYLOAD, id="json-null"),
    pytest.param(b"[]", Reason.BAD_PAYLOAD, id="empty-list"),
    pytest.param(b'["not a point"]', Reason.BAD_PAYLOAD, id="list-of-strings"),
    pytest.param(b'{"data": "not an object"}', Reason.BAD_PAYLOAD, id="string-data"),
]

ODD_TIMESTAMPS = [
    pytest.param(1_735_732_800, id="epoch-number"),
    pytest.param("1735732800", id="epoch-string"),
    pytest.param("NaN", id="nan"),
    pytest.param("", id="empty"),
    pytest.param("0000-01-01T00:00:00Z", id="year-0"),
    pytest.param("0001-01-01T00:00:00+01:00", id="year-1-east-of-utc"),
    pytest.param("9999-12-31T23:59:59Z", id="year-9999"),
    pytest.param("9999-12-31T23:59:59-01:00", id="year-9999-west-of-utc"),
    pytest.param("2016-12-31T23:59:60Z", id="leap-second"),
    pytest.param("2025-02-30T00:00:00Z", id="february-30"),
    pytest.param("1970-01-01T00:00:00Z", id="epoch-zero"),
    pytest.param("2100-01-01T00:00:00Z", id="far-future"),
    pytest.param("2026-11-03T11:00:00Z\u0000", id="nul-after"),
    pytest.param("x" * 100_000, id="huge"),
    pytest.param({"$date": 1}, id="object"),
]


@pytest.mark.parametrize(("payload", "reason"), UNREADABLE)
def test_an_unreadable_payload_is_refused_with_its_reason(payload, reason):
    with pytest.raises(BadMessageError) as refused:
        parse_payload(payload, RECEIVED_AT)

    assert refused.value.reason is reason
    assert refused.value.detail


@pytest.mark.parametrize("ts", ODD_TIMESTAMPS)
def test_an_odd_timestamp_is_refused_naming_ts(ts):
    with pytest.raises(BadMessageError) as refused:
        parse_payload(message(ts=ts), RECEIVED_AT)

    assert refused.value.reason is Reason.BAD_TS
    assert refused.value.detail.startswith("ts: ")


def test_an_odd_timestamp_in_a_list_names_its_point():
    payload = json.dumps(
        [{"ts": "2026-11-03T11:00:00Z", "data": {}}, {"ts": "23:59:60", "data": {}}]
    ).encode()

    with pytest.raises(BadMessageError) as refused:
        parse_payload(payload, RECEIVED_AT)

    assert refused.value.reason is Reason.BAD_TS
    assert refused.value.detail.startswith("1.ts: ")


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param("2026-11-03T11:00:00", datetime(2026, 11, 3, 11, tzinfo=UTC), id="no-zone"),
        pytest.param(
            "2026-11-03T08:00:00-03:00", datetime(2026, 11, 3, 11, tzinfo=UTC), id="offset"
        ),
        pytest.param("2026-W45-2", datetime(2026, 11, 3, tzinfo=UTC), id="week-date"),
        pytest.param(None, RECEIVED_AT, id="null-is-arrival-time"),
    ],
)
def test_documented_timestamp_forms_are_read_in_utc(ts, expected):
    (reading,) = parse_payload(message(ts=ts), RECEIVED_AT)

    assert reading.ts == expected
    assert reading.ts.tzinfo is UTC


# Through a running consumer and a real broker: acknowledged, rejected, nothing stored.

STORED_REFUSALS = [
    pytest.param({"x": "a\u0000b"}, id="nul-in-value"),
    pytest.param({"a\u0000": 1}, id="nul-in-key"),
    pytest.param({"x": "y" * 70_000}, id="huge-string"),
    pytest.param(json.loads(f'{{"x": {nested(300)}}}'), id="nested-300"),
]


@pytest.mark.django_db(transaction=True)
def test_every_bad_message_is_rejected_by_the_consumer_and_nothing_is_stored(
    start_consumer, publisher, mqtt_broker, mqtt_device, caplog
):
    caplog.set_level(logging.WARNING, logger="ingest_daemons.mqtt.consumer")
    topic = mqtt_broker.topic_of(MQTT_TOKEN)
    payloads = [cast(bytes, param.values[0]) for param in UNREADABLE]
    payloads += [message(ts=param.values[0]) for param in ODD_TIMESTAMPS]
    payloads += [message(data=param.values[0]) for param in STORED_REFUSALS]
    running = start_consumer()

    for payload in payloads:
        publisher.send(topic, payload)
    publisher.flush()
    wait_until(
        lambda: running.totals.acknowledged == len(payloads),
        what=f"{len(payloads)} PUBACKs",
    )

    assert Telemetry.objects.count() == 0
    assert (running.totals.rejected, running.totals.stored) == (len(payloads), 0)
    reasons = [
        record.reason for record in caplog.records if record.getMessage() == "mqtt.message_rejected"
    ]
    assert reasons.count(Reason.INVALID_POINT.value) == len(STORED_REFUSALS)
    assert reasons.count(Reason.BAD_TS.value) == len(ODD_TIMESTAMPS)
    assert len(reasons) == len(payloads)
