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


class AuthRateThrottle(CacheTolerantRateThrottle):
    """``API_AUTH_THROTTLE_RATE`` requests per client address on the public /auth routes.

    The address is the connection's, or the one ``TRUSTED_PROXY_COUNT`` proxies report.
    """

    scope = "auth"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
