"""Pure functions that turn another system's JSON into points, and points into bodies.

Paths are dotted (``vehicle.gps.speed``; a number step indexes a list: ``records.0.ts``).
A mapping names where the device, the time and the fields are; transforms (``round``,
``clamp``, ``scale``) then adjust numbers of the mapped data. Nothing here touches the
database: errors name the place in the input that could not be mapped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()
# A string that is nothing but one placeholder keeps the value's JSON type.
WHOLE_PLACEHOLDER = re.compile(r"^\{\{\s*([\w.]+)\s*\}\}$")
PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
TRANSFORMS = ("round", "clamp", "scale")


class MappingError(ValueError):
    """Input that the mapping cannot turn into points; ``field`` is where, in the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class MappedItem:
    """One point before its device is resolved."""

    device_key: str
    ts: Any
    data: dict[str, Any]
    # Where the item sits in the input: "" for a single object, "items.3." in a list.
    path: str


def get_path(value: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    if not path:
        return value
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return value


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Put a value at a dotted path, creating the objects on the way."""
    *parents, last = path.split(".")
    for step in parents:
        child = target.get(step)
        if not isinstance(child, dict):
            child = target[step] = {}
        target = child
    target[last] = value


def map_items(body: Any, mapping: dict[str, Any]) -> list[MappedItem]:
    """The points that ``mapping`` (a validated config) finds in ``body``."""
    items_path = mapping.get("items", "")
    if items_path:
        items = get_path(body, items_path)
        if items is MISSING:
            raise MappingError(items_path, "Missing: the mapping reads the list of points here.")
        if not isinstance(items, list):
            raise MappingError(items_path, "Must be a list of points.")
        if not items:
            raise MappingError(items_path, "The list of points is empty.")
        return [
            map_item(item, mapping, f"{items_path}.{index}.") for index, item in enumerate(items)
        ]
    return [map_item(body, mapping, "")]


def map_item(item: Any, mapping: dict[str, Any], where: str) -> MappedItem:
    if not isinstance(item, dict):
        raise MappingError(where.rstrip(".") or "body", "Must be a JSON object.")

    device_path = mapping["device"]
    device_key = get_path(item, device_path)
    if device_key is MISSING or device_key is None or device_key == "":
        raise MappingError(f"{where}{device_path}", "Missing: the mapping reads the device here.")
    if isinstance(device_key, bool) or not isinstance(device_key, (str, int)):
        raise MappingError(f"{where}{device_path}", "Must be a string or an integer.")

    ts: Any = None
    ts_path = mapping.get("ts", "")
    if ts_path:
        ts = get_path(item, ts_path)
        if ts is MISSING or ts is None:
            raise MappingError(f"{where}{ts_path}", "Missing: the mapping reads the time here.")

    fields: dict[str, str] = mapping.get("fields") or {}
    if fields:
        data: dict[str, Any] = {}
        for target, source in fields.items():
            value = get_path(item, source)
            if value is MISSING:
                raise MappingError(f"{where}{source}", f"Missing: the mapping reads {target} here.")
            set_path(data, target, value)
    else:
        data_path = mapping.get("data", "")
        found = get_path(item, data_path)
        if found is MISSING:
            raise MappingError(f"{where}{data_path}", "Missing: the mapping reads the data here.")
        if not isinstance(found, dict):
            raise MappingError(f"{where}{data_path}" or "body", "Must be a JSON object.")
        data = dict(found)
    return MappedItem(str(device_key), ts, data, where)


def apply_transforms(
    data: dict[str, Any], transforms: dict[str, list[dict[str, Any]]], where: str = ""
) -> dict[str, Any]:
    """Apply each field's transforms in order; a field absent from the data is left alone.

    A value that is not a number cannot be rounded, clamped or scaled: that is an error,
    not a silent pass, so a source that changes its format is noticed in the logs.
    """
    for path, steps in transforms.items():
        value = get_path(data, path)
        if value is MISSING or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MappingError(f"{where}{path}", "Must be a number to be transformed.")
        for step in steps:
            value = transform(value, step)
        if isinstance(value, float) and not math.isfinite(value):
            raise MappingError(f"{where}{path}", "The transforms made it an infinite number.")
        set_path(data, path, value)
    return data


def transform(value: float, step: dict[str, Any]) -> float:
    if "scale" in step:
        value = value * step["scale"] + step.get("offset", 0)
    elif "clamp" in step:
        low, high = step["clamp"]
        if low is not None:
            value = max(low, value)
        if high is not None:
            value = min(high, value)
    elif "round" in step:
        digits = step["round"]
        value = round(value) if digits == 0 else round(value, digits)
    return value


def render_template(template: Any, context: dict[str, Any]) -> Any:
    """The template with ``{{path}}`` placeholders filled from the context.

    ``"{{telemetry.data.gps.speed}}"`` alone becomes the number itself; inside a longer
    string it is written as text. A placeholder with no value becomes null (or "").
    """
    if isinstance(template, dict):
        return {key: render_template(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render_template(item, context) for item in template]
    if not isinstance(template, str):
        return template

    whole = WHOLE_PLACEHOLDER.match(template)
    if whole:
        value = get_path(context, whole.group(1))
        return None if value is MISSING else value

    def fill(match: re.Match[str]) -> str:
        value = get_path(context, match.group(1))
        return "" if value is MISSING or value is None else str(value)

    return PLACEHOLDER.sub(fill, template)
