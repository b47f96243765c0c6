"""What one MQTT ingest message says: its device token, from the topic, and its points.

The payload forms are the HTTP ingest's, parsed by the same code: ``{"data": {...},
"ts": "..."}`` (``ts`` optional, the arrival time by default), a bare object taken whole
as ``data`` (the original system's short form), or a list of ``{"ts", "data"}`` for
gateways that send several points at once. Nothing here touches the database.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from rest_framework import serializers

from apps.telemetry.api.ingest import RawPoint, batch_points, to_readings
from apps.telemetry.batching import Reading

WILDCARD_LEVEL = "+"
# As much of a token as logs may show; the same length HTTP ingest logs.
TOKEN_SHOWN = 4


class Reason(enum.StrEnum):
    """Why a message was refused: the label of the rejection counter and of the log line."""

    BAD_TOPIC = "bad_topic"
    INVALID_JSON = "invalid_json"
    BAD_PAYLOAD = "bad_payload"
    BAD_TS = "bad_ts"
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105  (a reason, not a secret)
    DEVICE_INACTIVE = "device_inactive"
    INVALID_POINT = "invalid_point"
    DATABASE_REFUSED = "database_refused"
    LIMITED = "limited"


class BadMessageError(ValueError):
    """A message that can never be stored, however often it is delivered."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TopicPattern:
    """A topic filter with one ``+`` level, the device token; e.g. ``ingest/+``."""

    filter: str
    levels: int
    token_level: int

    @classmethod
    def parse(cls, topic_filter: str) -> TopicPattern:
        levels = topic_filter.split("/")
        if "#" in topic_filter or levels.count(WILDCARD_LEVEL) != 1:
            raise ValueError(
                f"MQTT topic {topic_filter!r}: use exactly one '+' level, which stands for "
                "the device token, and no '#', e.g. ingest/+."
            )
        if any(WILDCARD_LEVEL in level and level != WILDCARD_LEVEL for level in levels):
            raise ValueError(f"MQTT topic {topic_filter!r}: '+' must be a whole level.")
        return cls(topic_filter, len(levels), levels.index(WILDCARD_LEVEL))

    def token_of(self, topic: str) -> str:
        levels = topic.split("/")
        if len(levels) != self.levels or not levels[self.token_level]:
            raise BadMessageError(Reason.BAD_TOPIC, f"the topic does not match {self.filter}")
        return levels[self.token_level]

    def shown(self, topic: str) -> str:
        """The topic as logs may show it: the token cut to its first characters."""
        levels = topic.split("/")
        if len(levels) == self.levels:
            levels[self.token_level] = levels[self.token_level][:TOKEN_SHOWN] + "…"
        return "/".join(levels)


def parse_payload(payload: bytes | bytearray, received_at: datetime) -> list[Reading]:
    """The readings of one message; a point without ``ts`` takes ``received_at``."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise BadMessageError(Reason.INVALID_JSON, str(error)) from None

    try:
        if isinstance(body, list):
            raw_points = batch_points(body, prefix="")
        elif isinstance(body, dict):
            if "data" in body:
                raw_points = [RawPoint(body.get("ts"), body["data"], "", None)]
            else:
                raw_points = [RawPoint(None, body, "", None)]
        else:
            raise BadMessageError(
                Reason.BAD_PAYLOAD, "send a JSON object, or a JSON list of points"
            )
        return to_readings(raw_points, received_at)
    except serializers.ValidationError as error:
        field, message = first_error(error.detail)
        reason = Reason.BAD_TS if field.endswith("ts") else Reason.BAD_PAYLOAD
        raise BadMessageError(reason, f"{field}: {message}") from None


def first_error(detail: Any) -> tuple[str, str]:
    """The first field and message of a DRF error detail (``{field: [message, ...]}``)."""
    if isinstance(detail, Mapping) and detail:
        field, messages = next(iter(detail.items()))
        if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
            return str(field), str(messages[0])
        return str(field), str(messages)
    return "payload", str(detail)
