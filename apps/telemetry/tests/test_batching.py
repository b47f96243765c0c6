"""Concurrent submissions written together, each answered with its own counts."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection

from apps.telemetry import batching
from apps.telemetry.batching import IngestBatcher, Reading, Refusal, Submission
from apps.telemetry.models import Telemetry
from apps.telemetry.services import InvalidPointError

from .conftest import DEVICE_TOKEN, FOREIGN_DEVICE_TOKEN, T0

pytestmark = pytest.mark.django_db


def readings(*minutes: float, **data: object) -> list[Reading]:
    return [Reading(T0 + timedelta(minutes=m), {"m": m, **data}) for m in minutes]


class TestSharingOutABatch:
    """write_submissions, the batch logic, in the caller's thread."""

    def test_each_submission_gets_its_own_counts(self, device, foreign_device):
        first = Submission(DEVICE_TOKEN, readings(0, 1, 2))
        second = Submission(FOREIGN_DEVICE_TOKEN, readings(0, 1))
        repeat = Submission(DEVICE_TOKEN, readings(2, 3))

        batching.write_submissions([first, second, repeat])

        assert (first.outcome.stored, first.outcome.duplicates) == (3, 0)
        assert (second.outcome.stored, second.outcome.duplicates) == (2, 0)
        assert (repeat.outcome.stored, repeat.outcome.duplicates) == (1, 1)
        assert Telemetry.objects.count() == 6

    def test_unknown_and_inactive_devices_are_refused_without_touching_others(
        self, device, foreign_device
    ):
        foreign_device.is_active = False
        foreign_device.save()
        unknown = Submission("no-such-token-0000000000", readings(0))
        inactive = Submission(FOREIGN_DEVICE_TOKEN, readings(0))
        good = Submission(DEVICE_TOKEN, readings(0))

        batching.write_submissions([unknown, inactive, good])

        assert unknown.outcome.refusal is Refusal.UNKNOWN_TOKEN
        assert inactive.outcome.refusal is Refusal.DEVICE_INACTIVE
        assert (good.outcome.refusal, good.outcome.stored) == (None, 1)
        assert list(Telemetry.objects.values_list("device_id", flat=True)) == [device.pk]


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the writer thread runs on PostgreSQL"
)


@pytest.fixture
def batcher():
    started = IngestBatcher(max_points=1000)
    yield started
    started.stop()


def submit_concurrently(
    batcher: IngestBatcher, submissions: list[tuple[str, list[Reading]]]
) -> list[Any]:
    """Submit from one thread each; returns outcomes or exceptions in the same order."""
    results: list[Any] = [None] * len(submissions)
    gate = threading.Barrier(len(submissions))

    def run(index, token, points):
        gate.wait()
        try:
            results[index] = batcher.submit(token, points)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, token, points))
        for index, (token, points) in enumerate(submissions)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@postgres_only
@pytest.mark.django_db(transaction=True)
class TestWriterThread:
    def test_concurrent_callers_each_return_after_their_points_are_stored(
        self, batcher, device, foreign_device
    ):
        submissions = [
            (DEVICE_TOKEN if n % 2 else FOREIGN_DEVICE_TOKEN, readings(n // 2, n // 2 + 0.5))
            for n in range(20)
        ]

        outcomes = submit_concurrently(batcher, submissions)

        assert all(isinstance(outcome, batching.Outcome) for outcome in outcomes)
        assert sum(outcome.stored for outcome in outcomes) == 40
        assert Telemetry.objects.count() == 40

    def test_a_point_sent_twice_at_once_is_stored_once(self, batcher, device):
        outcomes = submit_concurrently(batcher, [(DEVICE_TOKEN, readings(7))] * 8)

        assert sorted(outcome.stored for outcome in outcomes) == [0] * 7 + [1]
        assert sum(outcome.duplicates for outcome in outcomes) == 7
        assert Telemetry.objects.count() == 1

    def test_a_bad_submission_fails_alone(self, batcher, device, foreign_device):
        bad = [Reading(T0, {"text": "nul\x00"})]

        outcomes = submit_concurrently(
            batcher,
            [(DEVICE_TOKEN, readings(1)), (FOREIGN_DEVICE_TOKEN, bad), (DEVICE_TOKEN, readings(2))],
        )

        assert outcomes[0].stored == outcomes[2].stored == 1
        assert isinstance(outcomes[1], InvalidPointError)
        assert Telemetry.objects.count() == 2

    def test_a_database_failure_reaches_every_caller_and_nothing_is_acknowledged(
        self, batcher, device, monkeypatch
    ):
        def database_down(points, **kwargs):
            raise OperationalError("the database went away")

        monkeypatch.setattr(batching, "ingest_points", database_down)

        outcomes = submit_concurrently(batcher, [(DEVICE_TOKEN, readings(n)) for n in range(4)])

        assert all(isinstance(outcome, OperationalError) for outcome in outcomes)

    def test_a_stopped_batcher_refuses_new_work(self, batcher, device):
        batcher.stop()

        with pytest.raises(RuntimeError):
            batcher.submit(DEVICE_TOKEN, readings(0))


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_http_ingest_is_written_by_the_writer_thread(anonymous, device, settings, monkeypatch):
    settings.TELEMETRY_BATCH_WRITES = True
    own_batcher = IngestBatcher(max_points=100)
    monkeypatch.setattr(batching, "_batcher", own_batcher)
    body = {"token": DEVICE_TOKEN, "ts": "2025-01-01T12:00:00Z", "data": {"speed": 3}}
    try:
        created = anonymous.post("/ingest/http", body, format="json")
        repeated = anonymous.post("/ingest/http", body, format="json")
        refused = anonymous.post("/ingest/http", {**body, "token": "x" * 20}, format="json")
        writer = own_batcher._writer
    finally:
        own_batcher.stop()

    assert (created.status_code, repeated.status_code, refused.status_code) == (201, 200, 401)
    assert repeated.json() == {"stored": 0, "duplicates": 1}
    assert writer is not None
    assert writer is not threading.current_thread()
    assert Telemetry.objects.get().data == {"speed": 3}
