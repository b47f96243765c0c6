"""Decoded AVL records as telemetry data, in the shape the original system stored.

``{"gps": {...}, "io": {"<id>": raw value}}`` as before, plus the record's priority, the
I/O element that triggered it, the named and scaled values of the device's model at the
top level (``ignition``, ``external_voltage``, …) and the record's own bytes, so that it can
be decoded again should a mapping ever be corrected.
"""

from __future__ import annotations

from typing import Any

from ingest_daemons.teltonika.codec import AvlRecord
from ingest_daemons.teltonika.io_elements import named_values, raw_io_json

CODEC_NAMES = {0x08: "8", 0x8E: "8E", 0x10: "16"}


def record_data(record: AvlRecord, codec_id: int, model: str) -> dict[str, Any]:
    """The telemetry ``data`` object of one record from a device of ``model``."""
    gps = record.gps
    data: dict[str, Any] = named_values(record.io, record.io_sizes, model)
    data["gps"] = {
        "lat": gps.latitude,
        "lon": gps.longitude,
        "alt": gps.altitude,
        "angle": gps.angle,
        "sat": gps.satellites,
        "speed": gps.speed,
        # Without a fix the device repeats its last position: not where the vehicle is now.
        "valid": gps.valid,
    }
    data["io"] = raw_io_json(record.io)
    data["priority"] = record.priority
    data["event_io_id"] = record.event_io_id
    if record.generation_type is not None:
        data["generation_type"] = record.generation_type
    data["codec"] = CODEC_NAMES.get(codec_id, f"{codec_id:02X}")
    data["raw"] = record.raw.hex()
    return data
