"""CSV and GPX renderings of a device's points, produced as streams of text chunks."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from apps.telemetry.queries import PointRow, iso, lookup
from apps.telemetry.services import position_of

# Rows per chunk handed to the server: large enough to amortise, small enough to stream.
ROWS_PER_CHUNK = 500
# Garmin's track point extension: the namespace GPX readers know for speed.
TRACK_POINT_EXTENSION = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
KMH_PER_METRE_PER_SECOND = 3.6


def csv_cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_chunks(device_id: int, rows: Iterable[PointRow], keys: Sequence[str]) -> Iterator[str]:
    """A header row, then one row per point: each key a column, or the data as JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["device_id", "ts", *(keys or ["data"])])

    for count, row in enumerate(rows, start=1):
        if keys:
            cells = [
                csv_cell(value) if found else ""
                for found, value in (lookup(row.data, key) for key in keys)
            ]
        else:
            cells = [csv_cell(row.data)]
        writer.writerow([device_id, iso(row.ts), *cells])
        if count % ROWS_PER_CHUNK == 0:
            yield take(buffer)
    yield take(buffer)


def take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def gpx_chunks(device_name: str, rows: Iterable[PointRow]) -> Iterator[str]:
    """A GPX 1.1 track of the points that carry a position, in the order given."""
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="Quantum Fleet" xmlns="http://www.topografix.com/GPX/1/1"'
        f' xmlns:gpxtpx="{TRACK_POINT_EXTENSION}">\n'
        f"<trk><name>{escape(device_name)}</name><trkseg>\n"
    )
    parts: list[str] = []
    for row in rows:
        latitude, longitude = position_of(row.data)
        if latitude is None:
            continue
        parts.append(track_point(row, latitude, longitude or 0.0))
        if len(parts) >= ROWS_PER_CHUNK:
            yield "".join(parts)
            parts = []
    parts.append("</trkseg></trk>\n</gpx>\n")
    yield "".join(parts)


def track_point(row: PointRow, latitude: float, longitude: float) -> str:
    gps = row.data.get("gps")
    if not isinstance(gps, dict):
        gps = row.data
    elevation = gps.get("alt")
    speed = gps.get("speed")
    inner = ""
    if isinstance(elevation, (int, float)) and not isinstance(elevation, bool):
        inner += f"<ele>{elevation}</ele>"
    inner += f"<time>{iso(row.ts)}</time>"
    if isinstance(speed, (int, float)) and not isinstance(speed, bool):
        # Devices report km/h; the extension counts metres per second.
        metres_per_second = round(speed / KMH_PER_METRE_PER_SECOND, 3)
        inner += (
            "<extensions><gpxtpx:TrackPointExtension>"
            f"<gpxtpx:speed>{metres_per_second}</gpxtpx:speed>"
            "</gpxtpx:TrackPointExtension></extensions>"
        )
    return (
        f"<trkpt lat={quoteattr(str(latitude))} lon={quoteattr(str(longitude))}>{inner}</trkpt>\n"
    )
