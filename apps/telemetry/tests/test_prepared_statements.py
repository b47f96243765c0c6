"""The statements every ingested batch runs are prepared once per PostgreSQL session.

Django leaves psycopg's prepared statements off; planning the ingest statement over the
partitioned table each time then costs PostgreSQL about as much as running it. These
tests fail if a change of settings or cursors makes the statements plain again.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from apps.devices.services import active_device_ids, devices_by_token_hash, hash_device_token
from apps.telemetry.models import Telemetry
from apps.telemetry.services import Point, ingest_points
from apps.telemetry.storage import COPY_THRESHOLD

from .conftest import T0

pytestmark = pytest.mark.django_db

# More runs than the connection's prepare_threshold.
RUNS = 8


def prepared_statements() -> list[str]:
    return list(prepared_parameter_types())


def prepared_parameter_types() -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, parameter_types::text[] FROM pg_prepared_statements")
        return {row[0]: row[1] for row in cursor.fetchall()}


@pytest.fixture(autouse=True)
def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")


def test_the_insert_of_small_batches_is_prepared(device):
    for run in range(RUNS):
        point = Point(device.tenant_id, device.pk, T0 + timedelta(seconds=run), {"n": run})
        assert ingest_points([point]).stored == 1

    assert any("INSERT INTO telemetry" in statement for statement in prepared_statements())
    assert Telemetry.objects.filter(device=device).count() == RUNS


def test_the_device_lookups_are_prepared_and_answer_as_before(device, foreign_device):
    token_hashes = {device.token_hash, foreign_device.token_hash, hash_device_token("nobody")}
    for _ in range(RUNS):
        found = devices_by_token_hash(token_hashes)
        active = active_device_ids([device.pk, foreign_device.pk, 0])

    assert found == {
        device.token_hash: (device.pk, device.tenant_id, True),
        foreign_device.token_hash: (foreign_device.pk, foreign_device.tenant_id, True),
    }
    assert active == {device.pk, foreign_device.pk}
    statements = prepared_statements()
    assert any("WHERE token_hash = ANY" in statement for statement in statements)
    assert any("WHERE is_active AND id = ANY" in statement for statement in statements)


def test_the_lookups_read_their_array_parameter_once(device):
    # A parameter typed text and cast to an array in the statement is parsed again for
    # every row compared; typed as the array itself it is read once, at bind time.
    for run in range(RUNS):
        devices_by_token_hash({device.token_hash})
        active_device_ids([device.pk])
        # A batch large enough to be copied: the copy first reads the devices' latest times.
        start = T0 + timedelta(hours=run)
        batch = [
            Point(device.tenant_id, device.pk, start + timedelta(seconds=n), {"n": n})
            for n in range(COPY_THRESHOLD)
        ]
        assert ingest_points(batch).stored == COPY_THRESHOLD

    lookups = {
        statement: types
        for statement, types in prepared_parameter_types().items()
        if "= ANY(" in statement
    }
    assert len(lookups) == 3
    assert sorted(types[0] for types in lookups.values()) == ["bigint[]", "bigint[]", "text[]"]
