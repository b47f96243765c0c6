"""Brute-force protection of the login: failed attempts counted in the shared cache.

Failures are counted per account and client address (``LOGIN_FAILURES_PER_ACCOUNT``) and
per address alone (``LOGIN_FAILURES_PER_ADDRESS``), each in a window of
``LOGIN_FAILURE_WINDOW_SECONDS`` that starts at the first failure. While a count is at its
limit every login of that account from that address (or every login from that address)
is refused before the password is checked, with the same answer whether the account
exists or not. A successful login clears its account's count; the address count runs
out with its window.

The counters live in Django's default cache: Redis in production, so that every web
process counts together (with a cache per process, each one would allow the full limit).

A limit reached is recorded once per window as ``user.login_throttled``. Refused logins
that name no known account go to the audit trail only up to
``LOGIN_UNKNOWN_ACCOUNT_EVENTS`` per window; the rest are counted and logged, so that
guessing at random addresses cannot fill the table.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from apps.audit.models import EventType
from apps.audit.services import record_user_event_after_commit

logger = logging.getLogger(__name__)

KEY_PREFIX = "login-failures"


@dataclass(frozen=True)
class Counter:
    """One fixed-window count in the cache: its value and when its window started."""

    name: str
    limit: int

    @property
    def count_key(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:count"

    @property
    def started_key(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:started"

    def value(self) -> int:
        return int(cache.get(self.count_key) or 0)

    def increment(self) -> int:
        """Count one more in the current window (opening one if none is open)."""
        window = window_seconds()
        cache.add(self.started_key, time.time(), timeout=window)
        cache.add(self.count_key, 0, timeout=window)
        try:
            return cache.incr(self.count_key)
        except ValueError:
            # The window ran out between add and incr: this failure opens the next one.
            cache.set(self.count_key, 1, timeout=window)
            return 1

    def seconds_left(self) -> int:
        started = cache.get(self.started_key)
        if started is None:
            return window_seconds()
        return max(1, int(float(started) + window_seconds() - time.time()) + 1)

    def is_reached(self) -> bool:
        return self.limit > 0 and self.value() >= self.limit

    def clear(self) -> None:
        cache.delete_many([self.count_key, self.started_key])


def window_seconds() -> int:
    return int(settings.LOGIN_FAILURE_WINDOW_SECONDS)


def account_digest(login: str) -> str:
    # The address is hashed so the cache holds no list of the emails people tried.
    return hashlib.sha256(login.encode()).hexdigest()[:32]


def account_counter(login: str, address: str) -> Counter:
    return Counter(
        f"account:{account_digest(login)}:{address}", int(settings.LOGIN_FAILURES_PER_ACCOUNT)
    )


def address_counter(address: str) -> Counter:
    return Counter(f"address:{address}", int(settings.LOGIN_FAILURES_PER_ADDRESS))


def unknown_account_events_counter() -> Counter:
    return Counter("unknown-account-events", int(settings.LOGIN_UNKNOWN_ACCOUNT_EVENTS))


@dataclass(frozen=True)
class LoginBlock:
    """A login refused before its password is checked; retry after ``retry_after`` s."""

    retry_after: int


def check_login_allowed(login: str, address: str) -> LoginBlock | None:
    """The block on a login from this address for this account, if a limit is reached.

    Refused attempts are counted, not audited one by one; a cache that does not answer
    lets the login through (logged), because refusing every login would be worse.
    """
    try:
        for counter in (address_counter(address), account_counter(login, address)):
            if counter.is_reached():
                note_blocked_attempt(counter, address)
                return LoginBlock(retry_after=counter.seconds_left())
    except Exception:
        logger.exception("user.login_limit_unavailable")
    return None


def note_blocked_attempt(counter: Counter, address: str) -> None:
    blocked = Counter(f"{counter.name}:blocked", limit=0).increment()
    # Powers of two: a long attack leaves a few lines, not one per attempt.
    if blocked & (blocked - 1) == 0:
        logger.warning(
            "user.login_blocked",
            extra={"limit": counter.name.split(":")[0], "ip": address, "blocked": blocked},
        )


def record_login_failure(login: str, address: str, user_id: int | None) -> None:
    """Count a refused login and audit it; record ``user.login_throttled`` at a limit."""
    try:
        reached = [
            counter
            for counter in (account_counter(login, address), address_counter(address))
            if counter.limit > 0 and counter.increment() == counter.limit
        ]
    except Exception:
        logger.exception("user.login_limit_unavailable")
        reached = []

    audit_login_event(
        EventType.USER_LOGIN_FAILED, user_id, {"email": login[:254]}, count_unknown=True
    )
    for counter in reached:
        kind = counter.name.split(":")[0]
        logger.warning("user.login_throttled", extra={"limit": kind, "ip": address})
        payload: dict[str, Any] = {
            "limit": kind,
            "failures": counter.limit,
            "window_seconds": window_seconds(),
        }
        if kind == "account":
            payload["email"] = login[:254]
        audit_login_event(
            EventType.USER_LOGIN_THROTTLED,
            user_id if kind == "account" else None,
            payload,
            count_unknown=kind == "account",
        )


def audit_login_event(
    event_type: str, user_id: int | None, payload: dict[str, Any], *, count_unknown: bool
) -> None:
    """Audit an event of a login; those naming no known account within their budget."""
    if user_id is None and count_unknown and not unknown_account_event_allowed():
        return
    record_user_event_after_commit(event_type, user_id=user_id, payload=payload)


def unknown_account_event_allowed() -> bool:
    counter = unknown_account_events_counter()
    try:
        written = counter.increment()
    except Exception:
        logger.exception("user.login_limit_unavailable")
        return True
    if written == counter.limit + 1:
        logger.warning(
            "audit.unknown_login_events_capped",
            extra={"limit": counter.limit, "window_seconds": window_seconds()},
        )
    # Past the budget the counter goes on counting; its value is what was not written.
    return written <= counter.limit


def record_login_success(login: str, address: str) -> None:
    """A login succeeded: its account's failures from this address are forgotten."""
    try:
        account_counter(login, address).clear()
    except Exception:
        logger.exception("user.login_limit_unavailable")
