"""What the I/O element ids of an AVL record mean, per device model family.

Teltonika numbers I/O elements differently on the FMX6 professional trackers (FMC650,
FMB640, FMC640, FMM640, ...) and on the FMB/FMC1xx/FMC9xx platform: GNSS status is 71 on
one and 69 on the other, total odometer 216 and 16. ``io_elements.json`` holds both id
tables (name, byte width, signedness, multiplier, unit); ``NAMED_ELEMENTS`` picks the
values worth a stable top-level name, and ``named_values`` turns a record's raw I/O into
those names with physical units.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

FAMILY_FMC650 = "fmc650"
FAMILY_FMB = "fmb"
FAMILIES = (FAMILY_FMC650, FAMILY_FMB)

# FMX6 professional models: FMB630/640, FMC640/650, FMM640/650, the older FM63xx, ...
_PROFESSIONAL_MODEL = re.compile(r"\bFM[A-Z]?6\d\d")


@dataclass(frozen=True, slots=True)
class IoElement:
    """One row of a model family's I/O id table.

    ``byte_width`` is None for variable-length elements; ``multiplier`` is None where the
    vendor's scale is not known, and then no physical value is derived.
    """

    io_id: int
    name: str
    byte_width: int | None
    signed: bool
    multiplier: int | float | None
    unit: str | None
    ascii: bool = False


@dataclass(frozen=True, slots=True)
class NamedElement:
    """A top-level name for one I/O id, and the unit its value is given in.

    ``unit`` None keeps the table's unit; otherwise the value is converted to it (mV to V,
    mA to A) so that the same name means the same unit on every model family.
    """

    io_id: int
    unit: str | None = None


def _load_tables() -> dict[str, dict[int, IoElement]]:
    source = json.loads(Path(__file__).with_name("io_elements.json").read_text("utf-8"))
    return {
        family: {
            int(io_id): IoElement(
                io_id=int(io_id),
                name=row["name"],
                byte_width=row["bytes"],
                signed=row["signed"],
                multiplier=row["multiplier"],
                unit=row["unit"],
                ascii=row.get("ascii", False),
            )
            for io_id, row in source[family].items()
        }
        for family in FAMILIES
    }


IO_ELEMENTS: dict[str, dict[int, IoElement]] = _load_tables()


def _numbered(prefix: str, io_ids: list[int], unit: str | None = None) -> dict[str, NamedElement]:
    return {
        f"{prefix}_{number}": NamedElement(io_id, unit) for number, io_id in enumerate(io_ids, 1)
    }


_COMMON_NAMES = {
    "ignition": NamedElement(239),
    "movement": NamedElement(240),
    "gsm_signal": NamedElement(21),
    "sleep_mode": NamedElement(200),
    "gnss_pdop": NamedElement(181),
    "gnss_hdop": NamedElement(182),
    "external_voltage": NamedElement(66, "V"),
    "battery_voltage": NamedElement(67, "V"),
    "battery_current": NamedElement(68, "A"),
    "speed_gnss": NamedElement(24, "km/h"),
    "trip_odometer": NamedElement(199, "m"),
    "gsm_cell_id": NamedElement(205),
    "gsm_area_code": NamedElement(206),
    "active_gsm_operator": NamedElement(241),
    **_numbered("dallas_temperature", [72, 73, 74, 75], "°C"),
    **_numbered("lls_fuel_level", [201, 203]),
}

NAMED_ELEMENTS: dict[str, dict[str, NamedElement]] = {
    FAMILY_FMC650: {
        **_COMMON_NAMES,
        "gnss_status": NamedElement(71),
        "data_mode": NamedElement(22),
        "total_odometer": NamedElement(216, "m"),
        **_numbered("digital_input", [1, 2, 3, 4]),
        **_numbered("analog_input", [9, 10, 11, 245], "V"),
        **_numbered("digital_output", [179, 180, 50, 51]),
        "fuel_level_fms_percent": NamedElement(87, "%"),
        "fuel_level_can_percent": NamedElement(37, "%"),
        # CAN fuel level in litres (id 34) is left unnamed: the table lost its multiplier,
        # and a litre figure off by a factor of ten is worse than none. It stays in raw I/O.
        "engine_speed_fms_rpm": NamedElement(88),
        "wheel_based_speed_fms": NamedElement(80, "km/h"),
        "engine_total_fuel_used_fms": NamedElement(86),
        "pcb_temperature": NamedElement(70, "°C"),
        "vin": NamedElement(528),
    },
    FAMILY_FMB: {
        **_COMMON_NAMES,
        "gnss_status": NamedElement(69),
        "data_mode": NamedElement(80),
        "total_odometer": NamedElement(16, "m"),
        **_numbered("digital_input", [1, 2, 3]),
        **_numbered("analog_input", [9, 6], "V"),
        **_numbered("digital_output", [179, 180, 380]),
        "fuel_level_can_percent": NamedElement(89, "%"),
        "fuel_level_can_liters": NamedElement(84, "l"),
        "fuel_level_obd_percent": NamedElement(48, "%"),
        "vin": NamedElement(256),
    },
}

# Factor from a table unit to the unit a name promises.
_UNIT_FACTORS = {("mV", "V"): Decimal("0.001"), ("mA", "A"): Decimal("0.001")}


@dataclass(frozen=True, slots=True)
class _Projection:
    """How to turn one raw value into its named value."""

    name: str
    element: IoElement
    multiplier: int | float | None
    decimals: int


def _projection(name: str, named: NamedElement, element: IoElement) -> _Projection:
    if element.multiplier is None:
        return _Projection(name, element, None, 0)
    # Exact decimal arithmetic once here, so that the factor and its number of decimals
    # are those of the vendor's table (0.001, not 0.0010000000000000002).
    multiplier = Decimal(str(element.multiplier))
    if named.unit is not None and named.unit != element.unit:
        factor = _UNIT_FACTORS.get((element.unit or "", named.unit))
        if factor is None:
            raise ValueError(f"{name}: no conversion from {element.unit} to {named.unit}")
        multiplier *= factor
    exponent = multiplier.normalize().as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals == 0:
        return _Projection(name, element, int(multiplier), 0)
    return _Projection(name, element, float(multiplier), decimals)


def _projections() -> dict[str, dict[int, list[_Projection]]]:
    by_family: dict[str, dict[int, list[_Projection]]] = {}
    for family, names in NAMED_ELEMENTS.items():
        table = IO_ELEMENTS[family]
        by_id: dict[int, list[_Projection]] = {}
        for name, named in names.items():
            projection = _projection(name, named, table[named.io_id])
            by_id.setdefault(named.io_id, []).append(projection)
        by_family[family] = by_id
    return by_family


_PROJECTIONS = _projections()


# Asked for every record a daemon receives, of a handful of model names per fleet.
@lru_cache(maxsize=1024)
def model_family(model: str) -> str:
    """The I/O table family of a device model.

    ``"fmc650"`` for the FMX6 professional trackers (FMC650, FMB640, FMM640, ...),
    ``"fmb"`` for every other model, an empty or unknown one included.
    """
    if _PROFESSIONAL_MODEL.match(model.strip().upper()):
        return FAMILY_FMC650
    return FAMILY_FMB


def _signed(value: int, width: int | None) -> int:
    if width and 0 < width <= 8 and value >= 1 << (8 * width - 1) and value < 1 << (8 * width):
        return value - (1 << (8 * width))
    return value


def _byte_value(value: bytes, element: IoElement) -> str:
    if element.ascii:
        text = value.rstrip(b"\x00")
        if text and all(0x20 <= byte < 0x7F for byte in text):
            return text.decode("ascii")
    return value.hex()


def _scaled(projection: _Projection, value: int, width: int | None) -> int | float | None:
    element = projection.element
    if element.signed:
        value = _signed(value, width or element.byte_width)
    multiplier = projection.multiplier
    if multiplier is None:
        return None
    if projection.decimals == 0:
        return value * multiplier
    # Rounded to the multiplier's decimals: 24100 mV is 24.1 V, not 24.100000000000001.
    return round(value * multiplier, projection.decimals)


def named_values(
    io: Mapping[int, int | bytes], io_sizes: Mapping[int, int], model: str
) -> dict[str, Any]:
    """The named elements present in ``io``, in physical units for ``model``'s family.

    Signedness follows the table, applied at the width the value was sent in (from
    ``io_sizes``, else the table's). Byte values become hex, or text for ASCII elements
    such as the VIN. Ids without a name, and named ones whose scale is unknown, are left
    out: the caller keeps every raw value anyway.
    """
    projections = _PROJECTIONS[model_family(model)]
    named: dict[str, Any] = {}
    for io_id, value in io.items():
        for projection in projections.get(io_id, ()):
            if isinstance(value, bytes):
                named[projection.name] = _byte_value(value, projection.element)
                continue
            scaled = _scaled(projection, value, io_sizes.get(io_id))
            if scaled is not None:
                named[projection.name] = scaled
    return named


def raw_io_json(io: Mapping[int, int | bytes]) -> dict[str, int | str]:
    """``io`` as JSON: ids as strings, integers as they are, bytes as lowercase hex."""
    return {
        str(io_id): value.hex() if isinstance(value, bytes) else value
        for io_id, value in io.items()
    }
