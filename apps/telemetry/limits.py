"""Ingest rate limits and quotas: how much a device and a tenant may send and keep.

Every transport asks ``admit`` before it writes a batch: HTTP and MQTT through the
batcher, the Teltonika daemon through its point writer. ``admit`` answers which devices
of the batch are refused and why; the transport turns that into its own answer (HTTP 429
with ``Retry-After``, an MQTT rejection, a Teltonika packet left unacknowledged so the
tracker keeps it and sends it again).

Rates are counted in fixed one-minute windows shared by every process through Redis
(``INGEST_LIMITS_REDIS_URL``, by default ``REDIS_URL``); without Redis each process counts
for itself. Points of a refused request count against the window too, so a sender that
retries without waiting for ``Retry-After`` stays refused until the window ends. When
Redis cannot be reached the limits are not enforced: refusing every device because the
counter is away would be an outage of our own making, so the limiter lets points through,
logs it, and leaves Redis alone for COUNTERS_RETRY_SECONDS before it asks again.

The stored-points quota compares a tenant's points kept in telemetry (the sum of its
devices' ``device_state.point_count``, which retention lowers as it removes rows) with
its quota. That sum is read at most every ``QUOTA_REFRESH_SECONDS`` per process, so a
tenant may go over its quota by what it sends in that time.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from django.conf import settings

from apps.tenants.limits import TenantLimits, limits_by_tenant
from quantumfleet.database import rows_where_in

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# Refusals are kept per minute for an hour, for the tenant's usage page.
REFUSALS_KEPT_MINUTES = 60
LIMITS_REFRESH_SECONDS = 30.0
QUOTA_REFRESH_SECONDS = 10.0
# A full tenant must wait for retention or a larger quota; a device should not hammer.
QUOTA_RETRY_AFTER_SECONDS = 300
REDIS_DOWN_LOG_EVERY_SECONDS = 60.0
# After the counters fail, they are left alone this long: a Redis that hangs instead of
# refusing would otherwise cost every batch its socket timeout.
COUNTERS_RETRY_SECONDS = 10.0
# Short: the counters are a local round trip, and ingest waits for them.
COUNTERS_SOCKET_TIMEOUT_SECONDS = 0.2


class LimitReason(enum.StrEnum):
    DEVICE_RATE = "device_rate"
    TENANT_RATE = "tenant_rate"
    STORED_POINTS_QUOTA = "stored_points_quota"
    # API requests of the tenant's users refused by the per-user throttle (counted here so
    # that the tenant's admins read every refusal in one place).
    API_USER_RATE = "api_user_rate"


@dataclass(frozen=True)
class Demand:
    """What one device wants stored in this batch: its submissions' sizes, in order."""

    tenant_id: int
    device_id: int
    sizes: tuple[int, ...]

    @property
    def points(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class Refusal:
    """Why a device's points were not all admitted, and when it may try again.

    The device's first ``admitted`` submissions fit under the limit and may be stored;
    the rest are refused whole.
    """

    reason: LimitReason
    limit: int
    retry_after: int
    admitted: int = 0

    @property
    def message(self) -> str:
        if self.reason is LimitReason.DEVICE_RATE:
            return f"This device may send {self.limit} points per minute."
        if self.reason is LimitReason.TENANT_RATE:
            return f"This tenant's devices may send {self.limit} points per minute together."
        return f"This tenant keeps at most {self.limit} points; its quota is full."


# --- Counting ---------------------------------------------------------------------------------


class CountersUnavailableError(Exception):
    """The shared counters cannot be reached; nothing is enforced meanwhile."""


class WindowCounters(Protocol):
    def add(self, amounts: Mapping[str, int], ttl: int) -> dict[str, int]:
        """Add to each key (created with ``ttl`` seconds to live); the new totals."""

    def read(self, keys: Collection[str]) -> dict[str, int]:
        """The current totals of the keys; 0 for a key that does not exist."""


class RedisCounters:
    """Counters every process shares: one pipelined round trip per batch."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=COUNTERS_SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=COUNTERS_SOCKET_TIMEOUT_SECONDS,
        )

    def add(self, amounts: Mapping[str, int], ttl: int) -> dict[str, int]:
        keys = list(amounts)
        try:
            pipeline = self.client.pipeline(transaction=False)
            for key in keys:
                pipeline.incrby(key, amounts[key])
                pipeline.expire(key, ttl, nx=True)
            replies = pipeline.execute()
        except redis.RedisError as error:
            raise CountersUnavailableError(str(error)) from error
        return {key: int(replies[2 * index]) for index, key in enumerate(keys)}

    def read(self, keys: Collection[str]) -> dict[str, int]:
        names = list(keys)
        if not names:
            return {}
        try:
            values = self.client.mget(names)
        except redis.RedisError as error:
            raise CountersUnavailableError(str(error)) from error
        return {key: int(value or 0) for key, value in zip(names, values, strict=True)}


class LocalCounters:
    """Counters of this process only, for a deployment without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[int, float]] = {}

    def add(self, amounts: Mapping[str, int], ttl: int) -> dict[str, int]:
        now = time.monotonic()
        totals = {}
        with self._lock:
            if len(self._values) > 100_000:
                self._forget_expired(now)
            for key, amount in amounts.items():
                value, expires = self._values.get(key, (0, now + ttl))
                if expires <= now:
                    value, expires = 0, now + ttl
                self._values[key] = (value + amount, expires)
                totals[key] = value + amount
        return totals

    def read(self, keys: Collection[str]) -> dict[str, int]:
        now = time.monotonic()
        with self._lock:
            found = {key: self._values.get(key, (0, now)) for key in keys}
        return {key: value if expires > now else 0 for key, (value, expires) in found.items()}

    def _forget_expired(self, now: float) -> None:
        for key in [key for key, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]


# --- The limiter ------------------------------------------------------------------------------


class IngestLimiter:
    """Decides which devices of a batch may store their points now."""

    def __init__(self, counters: WindowCounters, key_prefix: str) -> None:
        self.counters = counters
        self.key_prefix = key_prefix
        self._lock = threading.Lock()
        self._limits: dict[int, tuple[float, TenantLimits]] = {}
        self._stored: dict[int, tuple[float, int]] = {}
        self._redis_down_logged_at = 0.0
        self._counters_down_until = 0.0
        # Wall-clock seconds: windows are shared between processes, so they follow the epoch.
        self.clock: Callable[[], float] = time.time

    def admit(self, demands: Iterable[Demand]) -> dict[int, Refusal]:
        """Refusals by device id; devices not in the answer may store their points."""
        wanted = [demand for demand in demands if demand.points > 0]
        if not wanted:
            return {}
        limits = self.limits_of({demand.tenant_id for demand in wanted})
        refusals = self._over_quota(wanted, limits)
        counted = [demand for demand in wanted if demand.device_id not in refusals]
        if self._counters_down():
            return refusals
        try:
            refusals.update(self._over_rate(counted, limits))
            if refusals:
                self._count_refused(wanted, refusals)
        except CountersUnavailableError as error:
            self._log_counters_down(error)
        return refusals

    def limits_of(self, tenant_ids: Collection[int]) -> dict[int, TenantLimits]:
        """Effective limits per tenant, from a cache refreshed every LIMITS_REFRESH_SECONDS."""
        now = time.monotonic()
        with self._lock:
            cached = {
                tenant_id: entry[1]
                for tenant_id in tenant_ids
                if (entry := self._limits.get(tenant_id)) and entry[0] > now
            }
        missing = [tenant_id for tenant_id in tenant_ids if tenant_id not in cached]
        if missing:
            fresh = self._read_limits(missing)
            with self._lock:
                for tenant_id, tenant in fresh.items():
                    self._limits[tenant_id] = (now + LIMITS_REFRESH_SECONDS, tenant)
            cached.update(fresh)
        return cached

    def forget(self) -> None:
        """Drop the cached limits and stored totals (after a tenant's limits change)."""
        with self._lock:
            self._limits.clear()
            self._stored.clear()

    def refused_last_hour(self, tenant_id: int) -> dict[str, int]:
        """Points refused per reason over the last hour; empty when Redis cannot tell."""
        minute = int(self.clock()) // 60
        keys = {
            (reason, offset): self._refused_key(tenant_id, reason, minute - offset)
            for reason in LimitReason
            for offset in range(REFUSALS_KEPT_MINUTES)
        }
        if self._counters_down():
            return {}
        try:
            values = self.counters.read(list(keys.values()))
        except CountersUnavailableError as error:
            self._log_counters_down(error)
            return {}
        totals = dict.fromkeys(LimitReason, 0)
        for (reason, _), key in keys.items():
            totals[reason] += values[key]
        return {str(reason): total for reason, total in totals.items()}

    def tenant_points_this_minute(self, tenant_id: int) -> int | None:
        window = int(self.clock()) // WINDOW_SECONDS
        key = self._rate_key("t", tenant_id, window)
        if self._counters_down():
            return None
        try:
            return self.counters.read([key])[key]
        except CountersUnavailableError as error:
            self._log_counters_down(error)
            return None

    # --- internals ---

    def _read_limits(self, tenant_ids: Collection[int]) -> dict[int, TenantLimits]:
        return limits_by_tenant(list(tenant_ids))

    def _over_quota(
        self, demands: list[Demand], limits: Mapping[int, TenantLimits]
    ) -> dict[int, Refusal]:
        quotas = {
            tenant_id: tenant.max_stored_points
            for tenant_id, tenant in limits.items()
            if tenant.max_stored_points > 0
        }
        if not quotas:
            return {}
        stored = self._stored_points(quotas.keys())
        return {
            demand.device_id: Refusal(
                LimitReason.STORED_POINTS_QUOTA,
                quotas[demand.tenant_id],
                QUOTA_RETRY_AFTER_SECONDS,
            )
            for demand in demands
            if demand.tenant_id in quotas and stored[demand.tenant_id] >= quotas[demand.tenant_id]
        }

    def _stored_points(self, tenant_ids: Collection[int]) -> dict[int, int]:
        now = time.monotonic()
        with self._lock:
            known = {
                tenant_id: entry[1]
                for tenant_id in tenant_ids
                if (entry := self._stored.get(tenant_id)) and entry[0] > now
            }
        missing = [tenant_id for tenant_id in tenant_ids if tenant_id not in known]
        if missing:
            fresh = stored_points_by_tenant(missing)
            with self._lock:
                for tenant_id, total in fresh.items():
                    self._stored[tenant_id] = (now + QUOTA_REFRESH_SECONDS, total)
            known.update(fresh)
        return known

    def _over_rate(
        self, demands: list[Demand], limits: Mapping[int, TenantLimits]
    ) -> dict[int, Refusal]:
        now = self.clock()
        window = int(now) // WINDOW_SECONDS
        retry_after = max(1, WINDOW_SECONDS - int(now) % WINDOW_SECONDS)
        amounts: dict[str, int] = {}
        for demand in demands:
            tenant = limits[demand.tenant_id]
            if tenant.device_points_per_minute > 0:
                key = self._rate_key("d", demand.device_id, window)
                amounts[key] = amounts.get(key, 0) + demand.points
            if tenant.tenant_points_per_minute > 0:
                key = self._rate_key("t", demand.tenant_id, window)
                amounts[key] = amounts.get(key, 0) + demand.points
        if not amounts:
            return {}
        totals = self.counters.add(amounts, WINDOW_SECONDS * 2)
        # What each window had counted before this batch; a tenant's window is then shared
        # out among its devices in the order they came.
        used = {key: totals[key] - amounts[key] for key in amounts}

        refusals: dict[int, Refusal] = {}
        for demand in demands:
            tenant = limits[demand.tenant_id]
            checks = (
                (LimitReason.TENANT_RATE, "t", demand.tenant_id, tenant.tenant_points_per_minute),
                (LimitReason.DEVICE_RATE, "d", demand.device_id, tenant.device_points_per_minute),
            )
            verdict: Refusal | None = None
            admitted = len(demand.sizes)
            for reason, scope, owner_id, limit in checks:
                if not limit:
                    continue
                key = self._rate_key(scope, owner_id, window)
                fit = fitting_submissions(demand.sizes[:admitted], limit - used[key])
                if fit < admitted:
                    admitted = fit
                    verdict = Refusal(reason, limit, retry_after, admitted)
                    self._note_trip(demand, reason, limit, previous_total=used[key])
            for scope, owner_id in (("t", demand.tenant_id), ("d", demand.device_id)):
                key = self._rate_key(scope, owner_id, window)
                if key in used:
                    used[key] += sum(demand.sizes[:admitted])
            if verdict is not None:
                refusals[demand.device_id] = verdict
        return refusals

    def _note_trip(
        self, demand: Demand, reason: LimitReason, limit: int, previous_total: int
    ) -> None:
        """Record the moment a window first refuses points: once per window."""
        if previous_total > limit:
            return
        logger.warning(
            "ingest.limit_tripped",
            extra={
                "tenant_id": demand.tenant_id,
                "device_id": demand.device_id,
                "reason": str(reason),
                "limit_per_minute": limit,
            },
        )
        from apps.audit.services import record_event

        record_event(
            "ingest.rate_limited",
            tenant_id=demand.tenant_id,
            device_id=demand.device_id if reason is LimitReason.DEVICE_RATE else None,
            payload={"reason": str(reason), "limit_per_minute": limit},
        )

    def _count_refused(self, demands: list[Demand], refusals: Mapping[int, Refusal]) -> None:
        minute = int(self.clock()) // 60
        amounts: dict[str, int] = {}
        for demand in demands:
            refusal = refusals.get(demand.device_id)
            if refusal is not None:
                key = self._refused_key(demand.tenant_id, refusal.reason, minute)
                refused_points = sum(demand.sizes[refusal.admitted :])
                amounts[key] = amounts.get(key, 0) + refused_points
        self.counters.add(amounts, (REFUSALS_KEPT_MINUTES + 1) * 60)

    def count_throttled_request(self, tenant_id: int) -> None:
        """Count one API request of the tenant refused by the per-user throttle."""
        if self._counters_down():
            return
        minute = int(self.clock()) // 60
        key = self._refused_key(tenant_id, LimitReason.API_USER_RATE, minute)
        try:
            self.counters.add({key: 1}, (REFUSALS_KEPT_MINUTES + 1) * 60)
        except CountersUnavailableError as error:
            self._log_counters_down(error)

    def _rate_key(self, scope: str, owner_id: int, window: int) -> str:
        return f"{self.key_prefix}:rate:{scope}:{owner_id}:{window}"

    def _refused_key(self, tenant_id: int, reason: LimitReason, minute: int) -> str:
        return f"{self.key_prefix}:refused:{tenant_id}:{reason}:{minute}"

    def _counters_down(self) -> bool:
        return time.monotonic() < self._counters_down_until

    def _log_counters_down(self, error: CountersUnavailableError) -> None:
        now = time.monotonic()
        self._counters_down_until = now + COUNTERS_RETRY_SECONDS
        if now - self._redis_down_logged_at >= REDIS_DOWN_LOG_EVERY_SECONDS:
            self._redis_down_logged_at = now
            logger.warning("ingest.limits_not_enforced", extra={"error": str(error)})


def fitting_submissions(sizes: Sequence[int], room: int) -> int:
    """How many of the leading submissions fit, whole, into ``room`` points."""
    used = 0
    for index, size in enumerate(sizes):
        used += size
        if used > room:
            return index
    return len(sizes)


def stored_points_by_tenant(tenant_ids: Collection[int]) -> dict[int, int]:
    """Points each tenant keeps in telemetry, from its devices' running counts."""
    ids = list(tenant_ids)
    rows = rows_where_in(
        "SELECT tenant_id, COALESCE(SUM(point_count), 0) FROM device_state WHERE {} "
        "GROUP BY tenant_id",
        "tenant_id",
        ids,
        "bigint",
    )
    found = {row[0]: int(row[1]) for row in rows}
    return {tenant_id: found.get(tenant_id, 0) for tenant_id in ids}


_limiter: IngestLimiter | None = None
_limiter_lock = threading.Lock()


def limiter() -> IngestLimiter:
    """The process's limiter, on Redis when INGEST_LIMITS_REDIS_URL (or REDIS_URL) is set."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            url = settings.INGEST_LIMITS_REDIS_URL
            counters: WindowCounters = RedisCounters(url) if url else LocalCounters()
            _limiter = IngestLimiter(counters, settings.INGEST_LIMITS_KEY_PREFIX)
        return _limiter


def reset_limiter() -> None:
    """Forget the process's limiter; the next call builds it from the settings again."""
    global _limiter
    with _limiter_lock:
        _limiter = None


def enforced() -> bool:
    return bool(settings.INGEST_LIMITS_ENABLED)


def admit(demands: Iterable[Demand]) -> dict[int, Refusal]:
    """Refusals by device id for a batch about to be written (see ``IngestLimiter.admit``)."""
    if not settings.INGEST_LIMITS_ENABLED:
        return {}
    return limiter().admit(demands)
