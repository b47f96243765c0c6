"""Remembers where the current request comes from, for events the platform records."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponseBase

MAX_USER_AGENT = 256


@dataclass(frozen=True)
class RequestOrigin:
    ip: str | None = None
    user_agent: str = ""


NO_ORIGIN = RequestOrigin()
_origin: ContextVar[RequestOrigin] = ContextVar("audit_request_origin", default=NO_ORIGIN)


def request_origin() -> RequestOrigin:
    """The address and user agent of the request being served; empty outside requests."""
    return _origin.get()


def valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


class RequestOriginMiddleware:
    """Keeps the client's address and user agent for the duration of the request.

    KNOWN LIMITATION: the address is REMOTE_ADDR. Behind a reverse proxy it is the proxy's,
    because no proxy is trusted to report the client's (X-Forwarded-For can be forged);
    events recorded by the platform then show the proxy's address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = _origin.set(
            RequestOrigin(
                ip=valid_ip(request.META.get("REMOTE_ADDR")),
                user_agent=request.headers.get("User-Agent", "")[:MAX_USER_AGENT],
            )
        )
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)
