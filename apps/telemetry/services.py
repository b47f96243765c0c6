"""The ingest service: the one write path of telemetry, shared by every transport.

HTTP, MQTT, Teltonika, webhooks and the collector hand ``ingest_points`` a batch of
points for devices they have already identified. It validates each point, drops repeats
of a (device, time) already stored or repeated within the batch, writes the batch in one
transaction, moves each device's latest state forward in the same transaction, and
returns only after the commit, so a transport can acknowledge on return. When it raises,
nothing of the batch was written and nothing must be acknowledged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import orjson
from django.conf import settings
from django.dispatch import Signal
from django.utils import timezone

from apps.devices.models import Device
from apps.telemetry import storage
from apps.telemetry.models import Telemetry

logger = logging.getLogger(__name__)

EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
# Device clocks drift; a day ahead is a broken clock, not drift.
LATEST_TS_AHEAD = timedelta(days=1)

# Sent after a batch is written (committed, unless the caller holds a transaction open),
# with ``points`` (the batch) and ``stored_keys`` (device id and ts of each point written).
# Receivers run on the ingest path: they must be quick, and their errors are logged, never
# raised to the transport.
points_stored = Signal()


class InvalidPointError(ValueError):
    """A point that cannot be stored, with the input field it is about."""

    def __init__(self, field: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.index = index


@dataclass(frozen=True)
class Point:
    """A reading of one device: its device time and its data (a JSON object)."""

    tenant_id: int
    device_id: int
    ts: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class RejectedPoint:
    index: int
    field: str
    message: str


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[RejectedPoint] = field(default_factory=list)
    # (device id, ts) of every point written, for callers that share out a batch.
    stored_keys: set[tuple[int, datetime]] = field(default_factory=set, repr=False)


def ingest_points(
    points: Sequence[Point], *, skip_invalid: bool = False, received_at: datetime | None = None
) -> IngestResult:
    """Store a batch of points; return counts of stored, duplicate and rejected points.

    With ``skip_invalid`` an invalid point is counted as rejected and the rest are
    stored (for streams that cannot answer per point); without it the first invalid point
    raises InvalidPointError and nothing is stored (HTTP answers 400).
    """
    result = IngestResult()
    if not points:
        return result

    # Validated as the storage consumes them, so that on PostgreSQL the database writes
    # the first rows while the next ones are still being checked. The storage commits
    # before it returns, or raises with nothing written.
    rows = valid_rows(points, received_at or timezone.now(), skip_invalid, result)
    result.stored_keys = storage.write_rows(
        rows, device_ids={point.device_id for point in points}, expected=len(points)
    )
    result.stored = len(result.stored_keys)
    result.duplicates = len(points) - result.rejected - result.stored
    if result.stored and points_stored.receivers:
        announce_stored(points, result.stored_keys)
    return result


def announce_stored(points: Sequence[Point], stored_keys: set[tuple[int, datetime]]) -> None:
    """Tell ``points_stored`` receivers about a written batch; a failing one is logged only."""
    replies = points_stored.send_robust(sender=Point, points=points, stored_keys=stored_keys)
    for receiver, reply in replies:
        if isinstance(reply, Exception):
            logger.error(
                "ingest.after_store_failed",
                exc_info=reply,
                extra={"receiver": getattr(receiver, "__qualname__", str(receiver))},
            )


def valid_rows(
    points: Sequence[Point], received_at: datetime, skip_invalid: bool, result: IngestResult
) -> Iterator[storage.Row]:
    """The points as rows, each (device, ts) once; counts rejections in ``result``."""
    seen: set[tuple[int, datetime]] = set()
    # Read once: a setting costs a lazy-object lookup, and this loop runs per point.
    max_bytes = settings.TELEMETRY_MAX_POINT_BYTES
    for index, point in enumerate(points):
        try:
            row = prepare_row(point, received_at, index, max_bytes)
        except InvalidPointError as error:
            if not skip_invalid:
                raise
            result.rejected += 1
            result.rejections.append(RejectedPoint(index, error.field, error.message))
            continue
        # The first of two points with the same device and time wins, as it would across
        # batches: the later one is a repeat.
        key = (point.device_id, row.ts)
        if key not in seen:
            seen.add(key)
            yield row


def prepare_row(point: Point, received_at: datetime, index: int, max_bytes: int) -> storage.Row:
    ts = check_timestamp(point.ts, received_at, index)
    if not isinstance(point.data, dict):
        raise InvalidPointError("data", "Must be a JSON object.", index)
    encoded = encode_data(point.data, index)
    if b"\\u0000" in encoded:
        raise InvalidPointError("data", "Strings must not contain NUL characters.", index)
    if len(encoded) > max_bytes:
        raise InvalidPointError("data", f"Larger than {max_bytes} bytes as JSON.", index)
    text = encoded.decode()
    latitude, longitude = position_of(point.data)
    return storage.Row(
        point.tenant_id, point.device_id, ts, received_at, point.data, text, latitude, longitude
    )


def encode_data(data: dict[str, Any], index: int) -> bytes:
    """The data as compact UTF-8 JSON, serialised once: validated, measured and written.

    orjson is several times faster than the standard encoder on this hot path, but writes
    NaN and infinities as null; they are refused instead, as JSON does.
    """
    try:
        encoded = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as error:
        if "recursion" in str(error).lower():
            raise InvalidPointError("data", "Nested too deeply.", index) from None
        raise InvalidPointError("data", f"Not storable as JSON: {error}.", index) from None
    # orjson writes NaN and infinities as null, so only data with a null needs the walk.
    if b"null" in encoded and not all_numbers_finite(data):
        raise InvalidPointError("data", "Numbers must be finite (no NaN or Infinity).", index)
    return encoded


def all_numbers_finite(value: Any) -> bool:
    # Plain loops: this runs for every point, and generators cost a third more here.
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return True
    for item in value:  # noqa: SIM110  (a loop: see above)
        if not all_numbers_finite(item):
            return False
    return True


def check_timestamp(ts: datetime, now: datetime, index: int | None = None) -> datetime:
    if not isinstance(ts, datetime):
        raise InvalidPointError("ts", "Must be a date and time.", index)
    if ts.tzinfo is None:
        # Devices that omit the offset send UTC, as the protocol documents require.
        ts = ts.replace(tzinfo=UTC)
    elif ts.tzinfo is not UTC:
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            # 0001-01-01 east of UTC or 9999-12-31 west of it: no datetime holds it in UTC.
            raise InvalidPointError("ts", "Is out of the range of dates.", index) from None
    if ts < EARLIEST_TS:
        raise InvalidPointError("ts", "Is before 2000-01-01: the device clock is not set.", index)
    if ts > now + LATEST_TS_AHEAD:
        raise InvalidPointError("ts", "Is more than a day in the future.", index)
    return ts


def delete_device_telemetry(device: Device) -> int:
    """Delete every point of a device; runs before the device itself is deleted."""
    deleted, _ = Telemetry.objects.filter(tenant_id=device.tenant_id, device_id=device.pk).delete()
    return deleted


def position_of(data: dict[str, Any]) -> tuple[float | None, float | None]:
    """Latitude and longitude from ``data.gps`` (or top-level ``lat``/``lon``), if valid."""
    gps = data.get("gps")
    source = gps if isinstance(gps, dict) else data
    # Trackers mark a position repeated from their last fix as not valid.
    if source.get("valid") is False:
        return None, None
    latitude, longitude = source.get("lat"), source.get("lon")
    if not (is_number(latitude) and is_number(longitude)):
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None
    # 0,0 is what trackers report without a GNSS fix, not a place anyone drives.
    if latitude == 0 and longitude == 0:
        return None, None
    return float(latitude), float(longitude)


def is_number(value: Any) -> TypeGuard[float]:
    """A finite JSON number (booleans are not numbers here)."""
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))
