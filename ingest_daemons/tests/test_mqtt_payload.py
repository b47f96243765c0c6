"""Topics and payloads of MQTT ingest messages, parsed without a broker or a database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest_daemons.mqtt.payload import BadMessageError, Reason, TopicPattern, parse_payload

NOW = datetime(2026, 10, 1, 12, tzinfo=UTC)


class TestTopics:
    def test_the_wildcard_level_is_the_token(self):
        pattern = TopicPattern.parse("fleet/+/telemetry")

        assert pattern.token_of("fleet/abcdef123456/telemetry") == "abcdef123456"

    @pytest.mark.parametrize("topic_filter", ["ingest/#", "ingest/+/+", "ingest", "ingest/x+"])
    def test_a_filter_without_exactly_one_token_level_is_refused(self, topic_filter):
        with pytest.raises(ValueError, match="MQTT topic"):
            TopicPattern.parse(topic_filter)

    @pytest.mark.parametrize("topic", ["ingest", "ingest/", "ingest/a/b"])
    def test_a_topic_of_another_shape_is_a_bad_topic(self, topic):
        with pytest.raises(BadMessageError) as caught:
            TopicPattern.parse("ingest/+").token_of(topic)

        assert caught.value.reason is Reason.BAD_TOPIC

    def test_logs_see_only_the_start_of_a_token(self):
        shown = TopicPattern.parse("ingest/+").shown("ingest/abcdefghijklmnop")

        assert shown == "ingest/abcd…"


class TestPayloads:
    def test_data_with_a_time(self):
        (reading,) = parse_payload(b'{"data": {"v": 1}, "ts": "2026-10-01T11:00:00Z"}', NOW)

        assert (reading.ts, reading.data) == (datetime(2026, 10, 1, 11, tzinfo=UTC), {"v": 1})

    def test_data_without_a_time_takes_the_arrival_time(self):
        (reading,) = parse_payload(b'{"data": {"v": 1}}', NOW)

        assert reading.ts == NOW

    def test_a_bare_object_is_the_data(self):
        (reading,) = parse_payload(b'{"gps": {"lat": -33.4, "lon": -70.6}}', NOW)

        assert (reading.ts, reading.data) == (NOW, {"gps": {"lat": -33.4, "lon": -70.6}})

    def test_a_list_is_a_gateway_batch(self):
        readings = parse_payload(
            b'[{"ts": "2026-10-01T10:00:00Z", "data": {"v": 1}},'
            b' {"ts": "2026-10-01T10:00:01+00:00", "data": {"v": 2}}]',
            NOW,
        )

        assert [reading.data for reading in readings] == [{"v": 1}, {"v": 2}]

    @pytest.mark.parametrize(
        ("payload", "reason", "detail"),
        [
            (b"{oops", Reason.INVALID_JSON, ""),
            (b"", Reason.INVALID_JSON, ""),
            (b'"text"', Reason.BAD_PAYLOAD, "JSON object"),
            (b'{"data": [1, 2]}', Reason.BAD_PAYLOAD, "data: Must be a JSON object."),
            (b'{"data": {}, "ts": "1999-12-31T23:59:59Z"}', Reason.BAD_TS, "2000-01-01"),
            (b'{"data": {}, "ts": "2026-10-03T12:00:00Z"}', Reason.BAD_TS, "future"),
            (b'{"data": {}, "ts": 1700000000}', Reason.BAD_TS, "ISO-8601"),
            (b"[]", Reason.BAD_PAYLOAD, "at least one point"),
            (b'[{"data": {}}]', Reason.BAD_TS, "0.ts: Required"),
            (b'[{"ts": "2026-10-01T10:00:00Z", "data": 3}]', Reason.BAD_PAYLOAD, "0.data"),
        ],
    )
    def test_a_payload_that_cannot_be_stored_says_why(self, payload, reason, detail):
        with pytest.raises(BadMessageError) as caught:
            parse_payload(payload, NOW)

        assert caught.value.reason is reason
        assert detail in caught.value.detail
