"""Writing the points of concurrent callers together, each answered after its own commit.

A web worker runs many requests at once, and the MQTT consumer receives messages from
many devices: stored one by one, each pays a statement and a commit of its own. Callers
hand their device token and readings to ``IngestBatcher.submit``; a single writer thread
takes whatever submissions are waiting, resolves their tokens with one query, writes all
their points through the ingest service in one batch, and wakes each caller with its own
counts once that batch is committed.

Callers announce themselves before they parse their request (``arriving``). The writer
waits for announced callers, a few milliseconds at most, before it writes: under load a
commit then carries the points of many requests instead of one or two, and a caller alone
is written at once.

If a batch fails, each submission is written again on its own, so one bad submission
cannot fail the others; a caller whose write failed gets the exception and must not
acknowledge anything.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from apps.devices.services import devices_by_token_hash, hash_device_token
from apps.telemetry import limits
from apps.telemetry.services import Point, RejectedPoint, ingest_points

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """One point before its device is known: device time and data."""

    ts: datetime
    data: dict[str, Any]


class Refusal(enum.StrEnum):
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105  (a reason, not a secret)
    DEVICE_INACTIVE = "device_inactive"
    # Over a rate limit or quota: ``Outcome.limit`` says which and when to try again.
    LIMITED = "limited"


@dataclass
class Outcome:
    """What happened to one submission: its counts, or why its device was refused."""

    stored: int = 0
    duplicates: int = 0
    refusal: Refusal | None = None
    device_id: int | None = None
    limit: limits.Refusal | None = None
    # With ``skip_invalid``: the points refused, indexed by their place in the readings.
    rejections: list[RejectedPoint] = field(default_factory=list)


@dataclass
class Submission:
    token: str
    readings: Sequence[Reading]
    outcome: Outcome = field(default_factory=Outcome)
    error: BaseException | None = None
    # Set by the batcher's writer for a caller waiting on it; None where nobody waits
    # (a consumer writing its own batches), as an event per message costs a lock.
    done: threading.Event | None = None


def write_submissions(submissions: Sequence[Submission], *, skip_invalid: bool = False) -> None:
    """Resolve the tokens, write every accepted reading in one batch, share out the counts.

    Raises when the batch could not be written; the outcomes are then not to be trusted.
    With ``skip_invalid`` an invalid reading is listed in its submission's rejections and
    the others are written, as ``ingest_points`` does.
    """
    # Each submission's device (or None), its token hashed once.
    hashes = [hash_device_token(submission.token) for submission in submissions]
    devices_by_hash = devices_by_token_hash(set(hashes))
    found = [devices_by_hash.get(token_hash) for token_hash in hashes]
    sizes: dict[int, list[int]] = {}
    tenants: dict[int, int] = {}
    for submission, device in zip(submissions, found, strict=True):
        if device is not None and device[2]:
            sizes.setdefault(device[0], []).append(len(submission.readings))
            tenants[device[0]] = device[1]
    refused = limits.admit(
        limits.Demand(tenants[device_id], device_id, tuple(counts))
        for device_id, counts in sizes.items()
    )
    # Of a device over its limit, the leading submissions that fit are still written.
    admitted_left = {device_id: refusal.admitted for device_id, refusal in refused.items()}

    points: list[Point] = []
    owners: list[Submission] = []
    # Where each submission's first point sits in the batch, to place its rejections.
    starts: dict[int, int] = {}
    for submission, device in zip(submissions, found, strict=True):
        if device is None:
            submission.outcome = Outcome(refusal=Refusal.UNKNOWN_TOKEN)
            continue
        device_id, tenant_id, is_active = device
        if not is_active:
            submission.outcome = Outcome(refusal=Refusal.DEVICE_INACTIVE, device_id=device_id)
            continue
        if device_id in refused:
            if admitted_left[device_id] > 0:
                admitted_left[device_id] -= 1
            else:
                submission.outcome = Outcome(
                    refusal=Refusal.LIMITED, device_id=device_id, limit=refused[device_id]
                )
                continue
        submission.outcome = Outcome(device_id=device_id)
        starts[id(submission)] = len(points)
        for reading in submission.readings:
            points.append(Point(tenant_id, device_id, reading.ts, reading.data))
            owners.append(submission)
    if not points:
        return

    result = ingest_points(points, skip_invalid=skip_invalid)
    stored_keys = result.stored_keys
    for rejection in result.rejections:
        owner = owners[rejection.index]
        place = rejection.index - starts[id(owner)]
        owner.outcome.rejections.append(RejectedPoint(place, rejection.field, rejection.message))
    rejected_at = {rejection.index for rejection in result.rejections}
    # A point stored by this batch is counted once, for the first submission that sent it.
    credited: set[tuple[int, datetime]] = set()
    for index, (point, owner) in enumerate(zip(points, owners, strict=True)):
        if index in rejected_at:
            continue
        key = (point.device_id, point.ts)
        if key in stored_keys and key not in credited:
            credited.add(key)
            owner.outcome.stored += 1
        else:
            owner.outcome.duplicates += 1


class IngestBatcher:
    """Collects submissions from any number of threads for one writer thread."""

    def __init__(self, max_points: int, gather_seconds: float = 0.0) -> None:
        self.max_points = max_points
        self.gather_seconds = gather_seconds
        self._pending: list[Submission] = []
        # Callers between ``arriving`` and their submission: the writer may wait for them.
        self._arriving = 0
        self._wakeup = threading.Condition()
        self._writer: threading.Thread | None = None
        self._stopping = False

    def stop(self) -> None:
        """Write what is pending, then end the writer thread and close its connection."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
            writer = self._writer
        if writer is not None:
            writer.join()

    def announce(self) -> None:
        """Count a caller that will submit soon, or call ``withdraw``."""
        with self._wakeup:
            self._arriving += 1

    def withdraw(self) -> None:
        """An announced caller will not submit after all (its request was refused)."""
        with self._wakeup:
            self._arriving -= 1
            self._wakeup.notify()

    def submit(
        self, token: str, readings: Sequence[Reading], *, announced: bool = False
    ) -> Outcome:
        """Store the readings of one device; returns once they are committed."""
        done = threading.Event()
        submission = Submission(token, readings, done=done)
        with self._wakeup:
            if announced:
                self._arriving -= 1
            if self._stopping:
                raise RuntimeError("The ingest batcher is stopped.")
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_forever, name="ingest-batcher", daemon=True
                )
                self._writer.start()
            self._pending.append(submission)
            self._wakeup.notify()
        done.wait()
        if submission.error is not None:
            raise submission.error
        return submission.outcome

    def _take_batch(self) -> list[Submission]:
        """The next submissions to write together; empty once stopped and drained."""
        with self._wakeup:
            while not self._pending and not self._stopping:
                self._wakeup.wait()
            self._gather_arrivals()
            batch: list[Submission] = []
            points = 0
            while self._pending and (not batch or points < self.max_points):
                submission = self._pending.pop(0)
                batch.append(submission)
                points += len(submission.readings)
            return batch

    def _gather_arrivals(self) -> None:
        """Wait, holding the lock's condition, for callers on their way to submitting."""
        deadline = time.monotonic() + self.gather_seconds
        while self._arriving and not self._stopping:
            if sum(len(s.readings) for s in self._pending) >= self.max_points:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.wait(left)

    def _write_forever(self) -> None:
        try:
            while batch := self._take_batch():
                self._write(batch)
        finally:
            connection.close()

    def _write(self, batch: list[Submission]) -> None:
        # A connection broken by a database restart is replaced before it is used.
        close_old_connections()
        try:
            write_submissions(batch)
        except Exception:
            if len(batch) > 1:
                logger.warning("ingest.batch_failed", extra={"submissions": len(batch)})
            self._write_one_by_one(batch)
        finally:
            for submission in batch:
                if submission.done is not None:
                    submission.done.set()

    def _write_one_by_one(self, batch: Sequence[Submission]) -> None:
        for submission in batch:
            close_old_connections()
            try:
                write_submissions([submission])
            except Exception as error:
                submission.error = error


class Arrival:
    """A caller on its way to submitting: the writer may wait a moment for its points."""

    def __init__(self, batcher: IngestBatcher | None) -> None:
        self.batcher = batcher
        self.submitted = False

    def submit(self, token: str, readings: Sequence[Reading]) -> Outcome:
        """Store one device's readings; returns once they are committed."""
        self.submitted = True
        if self.batcher is None:
            submission = Submission(token, readings)
            write_submissions([submission])
            return submission.outcome
        return self.batcher.submit(token, readings, announced=True)


_batcher: IngestBatcher | None = None
_batcher_lock = threading.Lock()


def process_batcher() -> IngestBatcher | None:
    """The process's batcher; None where points are written inline, in the caller's thread.

    Inline on SQLite, which has one writer anyway, and when TELEMETRY_BATCH_WRITES is off.
    """
    if connection.vendor != "postgresql" or not settings.TELEMETRY_BATCH_WRITES:
        return None
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            _batcher = IngestBatcher(
                max_points=settings.TELEMETRY_MAX_BATCH_POINTS,
                gather_seconds=settings.TELEMETRY_BATCH_GATHER_MS / 1000,
            )
    return _batcher


@contextmanager
def arriving() -> Iterator[Arrival]:
    """Announce a submission before the request is parsed; submit through what it yields."""
    arrival = Arrival(process_batcher())
    if arrival.batcher is None:
        yield arrival
        return
    arrival.batcher.announce()
    try:
        yield arrival
    finally:
        if not arrival.submitted:
            arrival.batcher.withdraw()


def submit_readings(token: str, readings: Sequence[Reading]) -> Outcome:
    """Store one device's readings through the process's batcher, or inline."""
    return Arrival(process_batcher()).submit(token, readings)
