"""Outbound HTTP for connectors and collectors, guarded against server-side request forgery.

A tenant chooses the URL, so a call must never reach what only the server can reach: the
loopback interface, private networks, link-local addresses (cloud metadata services sit
at 169.254.169.254) and other non-public ranges. The host is resolved at connection
time and every address it resolves to is checked; the connection goes to the address
that was checked, so a name that changes its answer between the check and the connect
(DNS rebinding) cannot slip through. Redirects are not followed and proxies from the
environment are ignored, for the same reason. CONNECTOR_ALLOWED_NETWORKS lists ranges
an operator trusts (an internal service, or the test server on 127.0.0.1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson
from django.conf import settings

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MASK = "••••••"
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
USER_AGENT = "QuantumFleet-Connector/1"


class TargetRefusedError(Exception):
    """The URL's host is, or resolves to, an address connectors may not call."""


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.CONNECTOR_ALLOWED_NETWORKS]


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address may not be called, or None when it may."""
    if any(address in network for network in allowed_networks()):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return refusal_reason(address.ipv4_mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata lives here)"
    if address.is_private:
        return "private network"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "not a unicast address"
    if not address.is_global:
        return "not a public address"
    return None


def vetted_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, or TargetRefusedError if any is refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for text in addresses:
        reason = refusal_reason(ipaddress.ip_address(text.split("%")[0]))
        if reason:
            raise TargetRefusedError(f"{host} resolves to {text}: {reason}.")
    return addresses


def check_url(url: str) -> None:
    """Refuse a URL whose host is already known to be off limits (for a 400 at save time).

    A name that does not resolve now is accepted: it is checked again at every call.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        vetted_addresses(host, parts.port or (443 if parts.scheme == "https" else 80))
    except httpcore.ConnectError:
        return


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to vetted addresses of the host it is asked for."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last_error: Exception | None = None
        for address in vetted_addresses(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or httpcore.ConnectError(f"no address for {host}")


def guarded_client(timeout: float) -> httpx.Client:
    transport = httpx.HTTPTransport()
    # httpx has no public way to give its transport a network backend; the pinned version's
    # pool is replaced by one that connects through the guard (TLS still checks the name).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=GuardedBackend()
    )
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )


@dataclass
class Exchange:
    """What happened on the wire: for the log and for the caller's decision."""

    http_status: int | None = None
    duration_ms: int = 0
    request_excerpt: str = ""
    response_excerpt: str = ""
    body: bytes = b""
    error: str = ""
    # Timeouts, connection errors and 5xx are worth another attempt; 4xx and refusals not.
    retryable: bool = False
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


def sign(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the body with the connector's secret, as ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, received: str) -> bool:
    expected = sign(secret, body)
    received = received.strip()
    if not received.startswith("sha256="):
        received = "sha256=" + received
    return hmac.compare_digest(expected, received.lower())


def build_headers(config: dict[str, Any], secret: str, body: bytes) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, **config.get("headers", {})}
    if body:
        headers.setdefault("Content-Type", "application/json")
    auth = config.get("auth", "none")
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {secret}"
    elif auth == "basic":
        pair = f"{config['username']}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif auth == "hmac":
        headers[config.get("signature_header", "X-Signature")] = sign(secret, body)
    return headers


def masked_headers(headers: dict[str, str], extra_secret: str | None = None) -> dict[str, str]:
    hidden = SECRET_HEADERS | ({extra_secret.lower()} if extra_secret else set())
    return {name: MASK if name.lower() in hidden else value for name, value in headers.items()}


def excerpt(text: str | bytes, secret: str = "") -> str:
    """The start of a body for the log, with the connector's secret blanked out if present."""
    if isinstance(text, bytes):
        text = text[: settings.CONNECTOR_LOG_EXCERPT_CHARS * 4].decode("utf-8", "replace")
    # PostgreSQL text columns refuse NUL; a body carrying one is still logged, marked so.
    text = text.replace("\x00", "\ufffd")
    if secret and len(secret) >= 4:
        text = text.replace(secret, MASK)
    limit = settings.CONNECTOR_LOG_EXCERPT_CHARS
    return text if len(text) <= limit else text[:limit] + "…"


def send(config: dict[str, Any], secret: str, body: Any | None) -> Exchange:
    """Make one request as the config says; never raises for what happens on the wire."""
    content = orjson.dumps(body) if body is not None else b""
    headers = build_headers(config, secret, content)
    method, url = config["method"], config["url"]
    shown = masked_headers(headers, config.get("signature_header"))
    exchange = Exchange(
        request_excerpt=excerpt(
            f"{method} {url}\n{orjson.dumps(shown).decode()}\n\n{content.decode()}", secret
        )
    )
    started = time.monotonic()
    max_bytes = settings.CONNECTOR_MAX_RESPONSE_BYTES
    try:
        with (
            guarded_client(config["timeout"]) as client,
            client.stream(method, url, content=content or None, headers=headers) as response,
        ):
            exchange.http_status = response.status_code
            received = bytearray()
            for chunk in response.iter_bytes():
                received.extend(chunk)
                if len(received) > max_bytes:
                    exchange.error = f"The response is larger than {max_bytes} bytes."
                    break
            exchange.body = bytes(received)
    except TargetRefusedError as error:
        exchange.error = f"Refused target: {error}"
        exchange.refused = True
    except httpx.TimeoutException as error:
        exchange.error = f"Timed out: {type(error).__name__}."
        exchange.retryable = True
    except (httpx.TransportError, httpcore.ConnectError) as error:
        exchange.error = f"Connection failed: {error}"
        exchange.retryable = True
    exchange.duration_ms = round((time.monotonic() - started) * 1000)
    if exchange.http_status is not None:
        exchange.response_excerpt = excerpt(exchange.body, secret)
        if exchange.http_status >= 500 or exchange.http_status == 429:
            exchange.retryable = True
        if not exchange.ok and not exchange.error:
            exchange.error = f"HTTP {exchange.http_status}."
    return exchange
