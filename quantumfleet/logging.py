"""Log formatting that keeps the fields passed in ``extra``.

Code logs a fixed event name with its fields (``logger.info("device.created",
extra={"device_id": 7})``). The JSON formatter (production) emits them as keys; the
key=value formatter (development) appends them to the line.
"""

from __future__ import annotations

import logging

# Attributes every LogRecord has; anything else on a record came from ``extra``.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES}


class KeyValueFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,000 INFO apps.devices.services device.created device_id=7``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value}" for key, value in extra_fields(record).items())
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {fields}{newline}{rest}"
