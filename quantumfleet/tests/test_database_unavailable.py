"""A database that cannot be reached is answered 503 with Retry-After, in the API's shape."""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import OperationalError, ProgrammingError
from django.http import HttpResponse
from django.test import RequestFactory

from quantumfleet.api.middleware import DatabaseUnavailableMiddleware


def middleware() -> DatabaseUnavailableMiddleware:
    return DatabaseUnavailableMiddleware(lambda request: HttpResponse())


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("server closed the connection unexpectedly"),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.InterfaceError("the connection is closed"),
    ],
)
def test_a_lost_database_is_a_503_to_send_again(error):
    request = RequestFactory().post("/ingest/http")

    response = middleware().process_exception(request, error)

    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    body = json.loads(response.content)
    assert body["code"] == "database_unavailable"
    assert "again" in body["detail"]


def test_other_errors_stay_server_errors():
    request = RequestFactory().get("/devices")

    assert middleware().process_exception(request, ProgrammingError("no such table")) is None
    assert middleware().process_exception(request, ValueError("a bug")) is None
