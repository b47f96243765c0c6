"""Batched, acknowledged-after-commit storage for the asyncio ingest daemons.

Connections hand their points to one ``PointWriter``; it groups what arrives within a few
milliseconds (or up to a size) into one call of the telemetry ingest service, run in a
dedicated thread because the ORM is synchronous. Each caller's ``store`` returns only after
the batch holding its points is committed, or raises if the batch was not: the caller
acknowledges on return and never after an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from django.db import close_old_connections, connections

from apps.devices.services import active_device_ids
from apps.telemetry import limits
from apps.telemetry.services import IngestResult, Point, ingest_points

logger = logging.getLogger(__name__)

_Result = TypeVar("_Result")


def with_usable_connection(function: Callable[..., _Result], *args: Any) -> _Result:
    """Call ``function`` in this thread, on a database connection that still works.

    A daemon outlives database restarts: a connection broken by one is dropped here and
    the next call opens a new one.
    """
    close_old_connections()
    try:
        return function(*args)
    except Exception:
        close_old_connections()
        raise


class DatabaseThreads:
    """Runs ORM calls off the event loop: writes in one thread, other calls in a few more."""

    def __init__(self, other_threads: int = 4) -> None:
        self.writes = ThreadPoolExecutor(1, thread_name_prefix="ingest-writer")
        self.others = ThreadPoolExecutor(other_threads, thread_name_prefix="ingest-db")
        self.other_threads = other_threads

    async def write(self, function: Callable[..., _Result], *args: Any) -> _Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.writes, partial(with_usable_connection, function, *args)
        )

    async def run(self, function: Callable[..., _Result], *args: Any) -> _Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.others, partial(with_usable_connection, function, *args)
        )

    def shutdown(self) -> None:
        """Close every thread's database connection, then the threads."""
        for pool, threads in ((self.writes, 1), (self.others, self.other_threads)):
            # Connections belong to their threads: each thread must close its own. The
            # barrier holds every job until all threads hold one, so each runs exactly one.
            barrier = threading.Barrier(threads, timeout=30)
            for _ in range(threads):
                pool.submit(close_own_connections, barrier)
            pool.shutdown(wait=True)


def close_own_connections(barrier: threading.Barrier) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    connections.close_all()


@dataclass(frozen=True)
class StoredCounts:
    """What became of one caller's points."""

    stored: int
    duplicates: int
    rejected: int


@dataclass
class _Submission:
    points: Sequence[Point]
    done: asyncio.Future[StoredCounts]
    refusal: limits.Refusal | None = None
    device_refused: bool = False


class PointWriter:
    """Groups the points of many connections into batches for the ingest service."""

    def __init__(
        self, database: DatabaseThreads, *, max_points: int = 5_000, max_delay: float = 0.005
    ) -> None:
        self.database = database
        self.max_points = max_points
        self.max_delay = max_delay
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="point-writer")

    async def store(self, points: Sequence[Point]) -> StoredCounts:
        """Store ``points``; returns once they are committed, raises if they were not."""
        if not points:
            return StoredCounts(0, 0, 0)
        done: asyncio.Future[StoredCounts] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Submission(points, done))
        return await done

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.empty():
                # A moment for the other connections' packets to join this commit.
                await asyncio.sleep(self.max_delay)
            size = len(batch[0].points)
            while size < self.max_points and not self._queue.empty():
                submission = self._queue.get_nowait()
                batch.append(submission)
                size += len(submission.points)
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Submission]) -> None:
        try:
            admitted, result = await self.database.write(partial(store_admitted, batch))
        except Exception as error:
            points = [point for submission in batch for point in submission.points]
            logger.exception("ingest.batch_failed", extra={"points": len(points)})
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(error)
            return
        for submission in batch:
            if submission.done.done():
                continue
            if submission.device_refused:
                submission.done.set_exception(DeviceRefusedError())
            elif submission.refusal is not None:
                submission.done.set_exception(LimitedError(submission.refusal))
        for submission, counts in zip(admitted, split_counts(admitted, result), strict=True):
            if not submission.done.done():
                submission.done.set_result(counts)


class DeviceRefusedError(Exception):
    """The device was deactivated or deleted since its connection opened."""


class LimitedError(Exception):
    """The device or its tenant is over a rate limit or quota: nothing was stored."""

    def __init__(self, refusal: limits.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def store_admitted(batch: Sequence[_Submission]) -> tuple[list[_Submission], IngestResult]:
    """Write the submissions the ingest limits admit; mark the others with their refusal."""
    # A device deactivated or deleted since its connection opened is refused now.
    active = active_device_ids({submission.points[0].device_id for submission in batch})
    # A connection's packet holds one device's records.
    sizes: dict[int, list[int]] = {}
    tenants: dict[int, int] = {}
    for submission in batch:
        first = submission.points[0]
        if first.device_id not in active:
            submission.device_refused = True
            continue
        sizes.setdefault(first.device_id, []).append(len(submission.points))
        tenants[first.device_id] = first.tenant_id
    refused = limits.admit(
        limits.Demand(tenants[device_id], device_id, tuple(counts))
        for device_id, counts in sizes.items()
    )
    admitted_left = {device_id: refusal.admitted for device_id, refusal in refused.items()}
    admitted = []
    for submission in batch:
        device_id = submission.points[0].device_id
        if submission.device_refused:
            continue
        if device_id in refused:
            if admitted_left[device_id] == 0:
                submission.refusal = refused[device_id]
                continue
            admitted_left[device_id] -= 1
        admitted.append(submission)
    points = [point for submission in admitted for point in submission.points]
    return admitted, ingest_points(points, skip_invalid=True)


def split_counts(batch: Sequence[_Submission], result: IngestResult) -> list[StoredCounts]:
    """Share out a batch's result among the submissions it was made of."""
    rejected_at = {rejection.index for rejection in result.rejections}
    counts = []
    offset = 0
    for submission in batch:
        stored = sum(
            1 for point in submission.points if (point.device_id, point.ts) in result.stored_keys
        )
        rejected = sum(
            1 for index in range(len(submission.points)) if offset + index in rejected_at
        )
        counts.append(StoredCounts(stored, len(submission.points) - stored - rejected, rejected))
        offset += len(submission.points)
    return counts
