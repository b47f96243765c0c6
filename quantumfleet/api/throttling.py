"""Request rates of the API: per user on authenticated routes, per address on /auth.

The rates come from ``API_USER_THROTTLE_RATE`` and ``API_AUTH_THROTTLE_RATE`` (see
docs/configuration.md); past one, DRF answers 429 with ``Retry-After`` and the error
handler gives the body the project's error shape (``code: throttled``). The history is
kept in the default cache, Redis in production, so every web process counts together.

Devices are not throttled here: ``POST /ingest/http`` answers outside DRF's request cycle,
and the other device routes (Teltonika records, webhooks) carry no user, which the user
throttle leaves alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.core.cache import cache
from rest_framework import throttling
from rest_framework.settings import api_settings

if TYPE_CHECKING:
    # Imported for types only: DRF imports this module while rest_framework.views loads.
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class CacheTolerantRateThrottle(throttling.SimpleRateThrottle):
    """A rate throttle whose rate is read per request and whose cache may fail.

    DRF reads the rates once, when its module is imported; reading them per request lets
    settings changes (and tests) take effect. A cache that does not answer lets requests
    through and is logged: losing the limit for a while is better than refusing all.
    """

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return None if rate is None else str(rate)

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.exception("api.throttle_cache_failed", extra={"scope": self.scope})
            return True


class UserRateThrottle(CacheTolerantRateThrottle):
    """``API_USER_THROTTLE_RATE`` requests per authenticated user, whatever the route.

    Requests without a user (public routes, devices) are not counted here.
    """

    scope = "user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        user = request.user
        if not (user and user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}

    def allow_request(self, request: Request, view: APIView) -> bool:
        allowed = super().allow_request(request, view)
        if not allowed:
            try:
                window = float(getattr(self, "duration", None) or 60)
                note_throttled(request, view, window, str(self.rate or ""))
            except Exception:
                # Bookkeeping of a refusal must not turn the 429 into a 500.
                logger.exception("api.throttle_note_failed")
        return allowed


def note_throttled(request: Request, view: APIView, window: float, rate: str) -> None:
    """Count a throttled request for its tenant; audit the first one of each window.

    The tenant is the one the request names (path or ``X-Tenant-Id``), else the user's
    only one; a request of a user of several tenants that names none is logged only.
    """
    from apps.audit.services import record_event
    from apps.telemetry.limits import limiter
    from apps.tenants.models import UserRole

    user_id = int(request.user.pk or 0)
    named = (getattr(view, "kwargs", None) or {}).get("tenant_id") or request.headers.get(
        "X-Tenant-Id", ""
    )
    tenant_id: int | None = int(named) if str(named).isdigit() else None
    if tenant_id is None:
        memberships = list(UserRole.objects.filter(user_id=user_id).values_list("tenant_id")[:2])
        tenant_id = memberships[0][0] if len(memberships) == 1 else None
    logger.warning(
        "api.throttled", extra={"user_id": user_id, "tenant_id": tenant_id, "rate": rate}
    )
    if tenant_id is None:
        return
    limiter().count_throttled_request(tenant_id)
    # One audit event per user and window: a client hammering past its rate would
    # otherwise write one row per refused request.
    if cache.add(f"api-throttle-noted:{user_id}", 1, timeout=int(window)):
        record_event(
            "api.throttled",
            tenant_id=tenant_id,
            user_id=user_id,
            payload={"rate": rate, "path": request.path[:200]},
        )


class AuthRateThrottle(CacheTolerantRateThrottle):
    """``API_AUTH_THROTTLE_RATE`` requests per client address on the public /auth routes.

    The address is the connection's, or the one ``TRUSTED_PROXY_COUNT`` proxies report.
    """

    scope = "auth"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
