"""The JSON a dashboard stores: panel queries and the config keys of each panel type.

Both are checked key by key, so a 400 names the exact key (``config.thresholds.1.value``,
``query.devices``) instead of rejecting the whole object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from apps.dashboards.models import PanelType
from apps.telemetry.queries import AGGREGATES, QueryError, parse_interval, parse_keys

# A panel reads each device with its own queries: the cap keeps one panel cheap.
MAX_QUERY_DEVICES = 20
MAX_QUERY_KEYS = 10
DEFAULT_LAST = "24h"
# Largest JSON object a panel config, query or dashboard layout may be.
MAX_JSON_BYTES = 16 * 1024

QUERY_KEYS = ("devices", "keys", "last", "from", "to", "interval", "agg", "limit")
# How stat and gauge panels reduce a range to one value.
REDUCERS = ("last", "first", "avg", "min", "max", "sum", "count")
COLOR_PATTERN = re.compile(r"^(#[0-9a-fA-F]{6}|[a-z]{3,20})$")


class ConfigError(ValueError):
    """A bad value at ``path`` (dotted, relative to the object being checked)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.path}" if self.path else prefix, self.message)


# The query of a panel or saved query.


@dataclass(frozen=True)
class PanelQuery:
    """A checked query: which devices and data paths, over which range, how summarised."""

    device_ids: list[int]
    keys: list[str]
    last_seconds: int | None
    start: datetime | None
    end: datetime | None
    interval: str | None
    interval_seconds: int | None
    aggregates: list[str]
    limit: int | None

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The range the query covers at ``now``: start inclusive, end exclusive."""
        if self.start is not None:
            return self.start, self.end or now
        return now - timedelta(seconds=self.last_seconds or parse_interval(DEFAULT_LAST)), now


def parse_query(raw: Any) -> PanelQuery:
    """Check a query object; raise ``ConfigError`` naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("", "Must be a JSON object.")
    for key in raw:
        if key not in QUERY_KEYS:
            raise ConfigError(key, f"Unknown key; use {', '.join(QUERY_KEYS)}.")

    device_ids = parse_devices(raw.get("devices"))
    raw_keys = raw.get("keys", [])
    if not isinstance(raw_keys, list) or not all(isinstance(key, str) for key in raw_keys):
        raise ConfigError("keys", "A list of data paths such as gps.speed.")
    try:
        keys = parse_keys(raw_keys)
    except QueryError as error:
        raise ConfigError("keys", error.message) from None
    if len(keys) > MAX_QUERY_KEYS:
        raise ConfigError("keys", f"At most {MAX_QUERY_KEYS} data paths.")

    last_seconds, start, end = parse_range(raw)
    interval = raw.get("interval")
    interval_seconds = None
    if interval is not None:
        if not isinstance(interval, str):
            raise ConfigError("interval", "A duration such as 30s, 5m, 1h or 1d.")
        interval_seconds = parse_duration("interval", interval)
    aggregates = parse_aggregates(raw.get("agg"), interval_seconds is not None)

    limit = raw.get("limit")
    if limit is not None and not is_integer(limit, 1, settings.TELEMETRY_QUERY_MAX_LIMIT):
        raise ConfigError(
            "limit", f"A whole number from 1 to {settings.TELEMETRY_QUERY_MAX_LIMIT}."
        )
    return PanelQuery(
        device_ids=device_ids,
        keys=keys,
        last_seconds=last_seconds,
        start=start,
        end=end,
        interval=interval,
        interval_seconds=interval_seconds,
        aggregates=aggregates,
        limit=limit,
    )


def parse_devices(value: Any) -> list[int]:
    if value is None:
        raise ConfigError("devices", "Name at least one device id.")
    if not isinstance(value, list) or not value:
        raise ConfigError("devices", "A non-empty list of device ids.")
    if len(value) > MAX_QUERY_DEVICES:
        raise ConfigError("devices", f"At most {MAX_QUERY_DEVICES} devices.")
    for index, device_id in enumerate(value):
        if not is_integer(device_id, 1, None):
            raise ConfigError(f"devices.{index}", "A device id is a positive integer.")
    return list(dict.fromkeys(value))


def parse_range(raw: dict[str, Any]) -> tuple[int | None, datetime | None, datetime | None]:
    last, start_raw, end_raw = raw.get("last"), raw.get("from"), raw.get("to")
    if last is not None and (start_raw is not None or end_raw is not None):
        raise ConfigError("last", "Give either last or from/to, not both.")
    if last is not None:
        if not isinstance(last, str):
            raise ConfigError("last", "A duration such as 15m, 24h or 7d.")
        # "last 24 h", as people write it, means "24h".
        compact = re.sub(r"\s+", "", last.strip().removeprefix("last"))
        return parse_duration("last", compact), None, None
    if end_raw is not None and start_raw is None:
        raise ConfigError("from", "Give the start of the range too.")
    start = parse_timestamp("from", start_raw) if start_raw is not None else None
    end = parse_timestamp("to", end_raw) if end_raw is not None else None
    if start and end and end <= start:
        raise ConfigError("to", "Must be after from.")
    return None, start, end


def parse_duration(key: str, value: str) -> int:
    try:
        return parse_interval(value)
    except QueryError:
        raise ConfigError(key, f"{value!r} is not a duration such as 30s, 5m, 1h or 1d.") from None


def parse_timestamp(key: str, value: Any) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise ConfigError(key, "An ISO-8601 time such as 2025-01-01T12:00:00Z.")
    # A time without offset is UTC, as in ingest.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_aggregates(value: Any, has_interval: bool) -> list[str]:
    if value is None:
        return ["avg"] if has_interval else []
    if not has_interval:
        raise ConfigError("agg", "Give an interval to aggregate.")
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ConfigError("agg", f"A list of one or more of: {', '.join(AGGREGATES)}.")
    cleaned = [name.strip() if isinstance(name, str) else name for name in names]
    for index, name in enumerate(cleaned):
        if name not in AGGREGATES:
            raise ConfigError(f"agg.{index}", f"Use one of: {', '.join(AGGREGATES)}.")
    return list(dict.fromkeys(cleaned))


def is_integer(value: Any, low: int, high: int | None) -> bool:
    # JSON true is a Python int; it is not a number a person meant.
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return value >= low and (high is None or value <= high)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The config of each panel type. A check returns nothing or raises ConfigError with a path
# relative to the value it checked.

Check = Callable[[Any], None]


def text(max_length: int = 64) -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, str) or len(value) > max_length:
            raise ConfigError("", f"Text of at most {max_length} characters.")

    return check


def boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError("", "true or false.")


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> None:
        if not is_integer(value, low, high):
            raise ConfigError("", f"A whole number from {low} to {high}.")

    return check


def number(value: Any) -> None:
    if not is_number(value):
        raise ConfigError("", "A number.")


def one_of(*choices: str) -> Check:
    def check(value: Any) -> None:
        if value not in choices:
            raise ConfigError("", f"One of: {', '.join(choices)}.")

    return check


def color(value: Any) -> None:
    if not isinstance(value, str) or not COLOR_PATTERN.match(value):
        raise ConfigError("", "A color such as #1f77b4 or red.")


def dot_path(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("", "A data path such as gps.speed.")
    try:
        parse_keys([value])
    except QueryError as error:
        raise ConfigError("", error.message) from None


def list_of(item: Check, max_items: int) -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, list) or len(value) > max_items:
            raise ConfigError("", f"A list of at most {max_items} items.")
        for index, element in enumerate(value):
            try:
                item(element)
            except ConfigError as error:
                raise error.under(str(index)) from None

    return check


def labels(value: Any) -> None:
    """Column titles by data path: ``{"gps.speed": "Speed"}``."""
    if not isinstance(value, dict):
        raise ConfigError("", "An object of data path to title.")
    for key, title in value.items():
        dot_path(key)
        try:
            text(64)(title)
        except ConfigError as error:
            raise error.under(key) from None


def thresholds(value: Any) -> None:
    """Colors from a value upwards: ``[{"value": 0, "color": "green"}, ...]``, ascending."""
    list_of(threshold, 10)(value)
    values = [step["value"] for step in value]
    for index in range(1, len(values)):
        if values[index] <= values[index - 1]:
            raise ConfigError(f"{index}.value", "Thresholds go in ascending order of value.")


def threshold(value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"value", "color"}:
        raise ConfigError("", 'An object {"value": number, "color": color}.')
    for key, check in (("value", number), ("color", color)):
        try:
            check(value[key])
        except ConfigError as error:
            raise error.under(key) from None


def coordinates(value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"lat", "lon"}:
        raise ConfigError("", 'An object {"lat": number, "lon": number}.')
    for key, limit in (("lat", 90), ("lon", 180)):
        if not is_number(value[key]) or abs(value[key]) > limit:
            raise ConfigError(key, f"A number from -{limit} to {limit}.")


@dataclass(frozen=True)
class PanelSchema:
    """The config keys a panel type accepts, those it needs, and whether it needs data paths."""

    options: Mapping[str, Check]
    required: frozenset[str] = frozenset()
    needs_keys: bool = True


COMMON_OPTIONS: dict[str, Check] = {"unit": text(16), "decimals": integer(0, 10)}

PANEL_SCHEMAS: dict[str, PanelSchema] = {
    PanelType.TIMESERIES: PanelSchema(
        {
            **COMMON_OPTIONS,
            "stacked": boolean,
            "fill": boolean,
            "legend": boolean,
            "line_width": integer(1, 10),
            "colors": list_of(color, 20),
            "y_min": number,
            "y_max": number,
        }
    ),
    PanelType.STAT: PanelSchema(
        {**COMMON_OPTIONS, "reduce": one_of(*REDUCERS), "thresholds": thresholds}
    ),
    PanelType.LATEST_TABLE: PanelSchema(
        {"columns": list_of(dot_path, MAX_QUERY_KEYS), "labels": labels, "show_ts": boolean},
        needs_keys=False,
    ),
    PanelType.MAP: PanelSchema(
        {
            "lat_key": dot_path,
            "lon_key": dot_path,
            "track": boolean,
            "zoom": integer(1, 20),
            "center": coordinates,
        },
        needs_keys=False,
    ),
    PanelType.GAUGE: PanelSchema(
        {
            **COMMON_OPTIONS,
            "min": number,
            "max": number,
            "reduce": one_of(*REDUCERS),
            "thresholds": thresholds,
        },
        required=frozenset({"min", "max"}),
    ),
}


def check_panel_config(panel_type: str, config: Any) -> None:
    """Check a panel's config against its type; raise ``ConfigError`` naming the key."""
    schema = PANEL_SCHEMAS[panel_type]
    if not isinstance(config, dict):
        raise ConfigError("", "Must be a JSON object.")
    for key, value in config.items():
        check = schema.options.get(key)
        if check is None:
            allowed = ", ".join(schema.options)
            raise ConfigError(key, f"Not a {panel_type} option; use {allowed}.")
        try:
            check(value)
        except ConfigError as error:
            raise error.under(key) from None
    for key in sorted(schema.required - set(config)):
        raise ConfigError(key, f"Required for a {panel_type} panel.")

    bounded = {"y_min", "y_max"} <= set(config)
    if panel_type == PanelType.TIMESERIES and bounded and config["y_max"] <= config["y_min"]:
        raise ConfigError("y_max", "Must be greater than y_min.")
    if panel_type == PanelType.GAUGE and config["max"] <= config["min"]:
        raise ConfigError("max", "Must be greater than min.")


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386): objects merge key by key, ``null`` removes a key."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
