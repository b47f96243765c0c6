from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.connectors import services
from apps.connectors.models import Connector, ConnectorKind
from apps.connectors.rules import forget_rules_of
from apps.devices import services as device_services
from apps.devices.models import Device

DEVICE_TOKEN = "device-alpha-token-0123456789"
IMEI = "356307042441013"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Target:
    """A local HTTP server standing in for another system.

    ``answers[path]`` is a list of (status, body) served in turn; the last one repeats.
    """

    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def answer(self, path: str, *answers: tuple[int, Any]) -> str:
        self.answers[path] = list(answers)
        return self.url(path)

    def next_answer(self, path: str) -> tuple[int, Any]:
        with self.lock:
            queue = self.answers.get(path) or [(200, {"ok": True})]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def calls_to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@pytest.fixture
def target() -> Iterator[Target]:
    state = Target("127.0.0.1", 0)

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.received.append(
                Received(self.command, self.path, dict(self.headers.items()), body)
            )
            status, reply = state.next_answer(self.path)
            encoded = json.dumps(reply).encode() if not isinstance(reply, bytes) else reply
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = do_PUT = handle_any  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="target", daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def connector_settings(settings: Any) -> None:
    """Short backoff, and the local target allowed (only for these tests)."""
    settings.CONNECTOR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.CONNECTOR_RETRY_BACKOFF_SECONDS = 0.05
    settings.CONNECTOR_RETRY_BACKOFF_MAX_SECONDS = 0.2
    settings.CONNECTOR_MAX_ATTEMPTS = 3
    forget_rules_of()


@pytest.fixture
def device(tenant_a) -> Device:
    created, _ = device_services.create_device(
        tenant=tenant_a.tenant, name="Truck A", token=DEVICE_TOKEN, external_id=IMEI
    )
    return created


def make_outbound(tenant: Any, url: str, name: str = "alerts", **config: Any) -> Connector:
    secret = config.pop("secret", "")
    connector, _ = services.save_connector(
        tenant,
        name=name,
        kind=ConnectorKind.OUTBOUND_HTTP,
        config={"url": url, "timeout": 2, **config},
        secret=secret,
    )
    return connector


def make_webhook(
    tenant: Any, mapping: dict[str, Any], secret: str = "", **config: Any
) -> tuple[Connector, str]:
    connector, token = services.save_connector(
        tenant,
        name="inbound",
        kind=ConnectorKind.WEBHOOK,
        config={"mapping": mapping, **config},
        secret=secret,
    )
    assert token is not None
    return connector, token
