"""A database connection lost under the ingest service: Django's error, then a new one.

The storage writes through psycopg cursors of its own. When PostgreSQL restarts under
them, the error must reach callers as Django's ``OperationalError`` (what the MQTT
consumer retries, the web answers 503, the daemons' writer replaces the connection
after), never as psycopg's own, which the consumer took for a bug and died of.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import OperationalError, close_old_connections, connection

from apps.telemetry.models import Telemetry
from apps.telemetry.services import Point, ingest_points

from .conftest import T0

pytestmark = pytest.mark.django_db(transaction=True)


def cut_connection_of_this_thread() -> None:
    """End this thread's database session from the server side, as a restart does."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_lost_connection_is_an_operational_error_and_is_replaced(device):
    if connection.vendor != "postgresql":
        pytest.skip("the storage writes through psycopg only on PostgreSQL")
    points = [
        Point(device.tenant_id, device.pk, T0 + timedelta(seconds=n), {"n": n}) for n in (1, 2)
    ]
    cut_connection_of_this_thread()

    with pytest.raises(OperationalError):
        ingest_points(points)

    # Marked broken, so the next caller gets a new connection and the points are stored.
    assert connection.errors_occurred
    close_old_connections()
    result = ingest_points(points)
    assert (result.stored, result.duplicates) == (2, 0)
    assert Telemetry.objects.filter(device=device).count() == 2
