"""Log formatting that keeps the fields passed in ``extra``.

Code logs a fixed event name with its fields (``logger.info("device.created",
extra={"device_id": 7})``). The JSON formatter (production) emits them as keys; the
key=value formatter (development) appends them to the line.

``MaskSecretPaths`` shortens the credentials that travel in URL paths (a webhook's
``/hooks/<token>``) in the request lines Django logs for refused requests.
"""

from __future__ import annotations

import logging
import re

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


# A webhook's URL is its credential: /hooks/<token>. Four characters tell calls apart.
SECRET_PATH = re.compile(r"(/hooks/)([\w-]{4})[\w-]+")


def mask_secret_paths(text: str) -> str:
    return SECRET_PATH.sub(r"\1\2…", text)


class MaskSecretPaths(logging.Filter):
    """Shortens webhook tokens in a record's message and in the request it carries.

    Django logs every 4xx and 5xx answer as ``Unauthorized: /hooks/<token>`` with the
    request attached (``django.request``); a refused webhook call would otherwise write
    the webhook's whole token to the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secret_paths(message)
        if masked != message:
            record.msg, record.args = masked, ()
        request = getattr(record, "request", None)
        if request is not None and SECRET_PATH.search(str(getattr(request, "path", ""))):
            # Handlers that read request attributes (the admins' e-mail) fall back to none.
            record.request = mask_secret_paths(repr(request))
        return True
