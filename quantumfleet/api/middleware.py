"""A database that cannot be reached is answered 503 with Retry-After, not 500.

While PostgreSQL restarts, or on the first request over a connection it broke, a view
fails with a connection error. A 500 says "the server has a bug"; a 503 with
``Retry-After`` says "send it again shortly", which is what a device must do with points
that were not acknowledged (resending them is harmless: ingest drops repeats of a device
and time). The error keeps the API's shape, and is logged as a warning without a
traceback, since a restart makes one per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework import exceptions, status

from quantumfleet.api.errors import error_response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
# Django wraps the errors of its own cursors; ingest also writes through psycopg's.
DATABASE_UNAVAILABLE_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "database_unavailable"
    default_detail = "The database could not be reached. Send the request again shortly."


class DatabaseUnavailableMiddleware:
    """Turns a database connection error raised by a view into a 503 with Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            return None
        logger.warning(
            "api.database_unavailable",
            extra={"path": request.path, "error": str(exception).strip()[:200]},
        )
        response = error_response(DatabaseUnavailable())
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
