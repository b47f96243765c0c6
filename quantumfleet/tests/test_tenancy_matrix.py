"""Every route of the API, called by every role of tenant A on the data of tenant B.

The routes come from the OpenAPI schema, so a route added to the API without an entry in
``ROUTES`` fails ``test_every_route_of_the_schema_has_a_matrix_entry``, naming it. Each
entry says how to fill the route's path, query and body with tenant B's objects, and what
tenant A's admin must get when it does so from inside tenant A.

Each route is attacked three ways:

- ``foreign tenant``: the request names tenant B (``X-Tenant-Id`` or ``{tenant_id}``);
  every member of A (and a user of no tenant) must get 403.
- ``foreign object``: the request acts in tenant A with B's ids in the path (all of them,
  and, on nested routes, A's parent with B's child); 404, or 403 for a role too low.
- ``foreign reference``: A's own objects in the path, B's ids in the query or the body;
  a 400 naming the field, a 404, or a list without B's rows, as the entry says.

Every answer is searched for B's values: names, ids, token prefixes and whole tokens,
external ids, emails, secrets, telemetry values, command texts. After every write, B's
rows must be as they were. Each request runs in a savepoint rolled back after it, so the
routes do not disturb each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps as django_apps
from django.db import connection, models, transaction
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from apps.accounts.models import User
from apps.audit import services as audit_services
from apps.connectors import services as connector_services
from apps.connectors.models import (
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Direction,
    LogStatus,
    Rule,
)
from apps.dashboards import services as dashboard_services
from apps.devices import services as device_services
from apps.devices.models import DeviceSession
from apps.telemetry.batching import Reading, submit_readings
from apps.tenants.models import Role, Tenant, UserRole
from conftest import PASSWORD, TenantCast, make_cast

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
# Tenant B's ids start here, far above A's, so that an id in an answer is B's for sure.
FOREIGN_ID_FLOOR = 5_000_000
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


# The two tenants' objects.


@dataclass
class Side:
    """One tenant's cast and one object of each kind, with its secrets."""

    cast: TenantCast
    objects: dict[str, Any] = field(default_factory=dict)
    device_token: str = ""
    webhook_token: str = ""

    def id(self, kind: str) -> int:
        return int(self.objects[kind].pk)

    @property
    def tenant_id(self) -> int:
        return int(self.cast.tenant.pk)


def build_side(cast: TenantCast, label: str, outbound_url: str) -> Side:
    """A device with points and a command, connectors with a call, log and rule, a
    dashboard with a panel, a saved query, audit events and sessions."""
    tenant = cast.tenant
    side = Side(cast)
    side.device_token = f"{label}-device-token-{'x' * 24}"
    imei = "356307042441011" if label == "alpha" else "356307042441022"
    device, _ = device_services.create_device(
        tenant=tenant,
        name=f"{label} secret truck",
        token=side.device_token,
        external_id=imei,
    )
    submit_readings(
        side.device_token,
        [Reading(T0, {"speed": 4242.4242 if label == "bravo" else 11.5, "marker": f"{label}-tm"})],
    )
    command = device_services.queue_command(device, f"{label}-command-text")
    outbound, _ = connector_services.save_connector(
        tenant,
        name=f"{label}-outbound",
        kind=ConnectorKind.OUTBOUND_HTTP,
        config={"url": f"{outbound_url}/{label}-hook-path", "timeout": 1},
        secret=f"{label}-connector-secret-value",
    )
    webhook, webhook_token = connector_services.save_connector(
        tenant,
        name=f"{label}-webhook",
        kind=ConnectorKind.WEBHOOK,
        config={"mapping": {"device": "imei", "ts": "time", "data": "values"}},
    )
    side.webhook_token = webhook_token or ""
    call = ConnectorCall.objects.create(
        tenant=tenant, connector=outbound, context={"payload": f"{label}-call-context"}
    )
    log = ConnectorLog.objects.create(
        tenant=tenant,
        connector=outbound,
        call=call,
        direction=Direction.OUTBOUND,
        status=LogStatus.FAILED,
        request_excerpt=f"{label}-request-excerpt",
    )
    rule = Rule.objects.create(
        tenant=tenant,
        name=f"{label}-rule",
        connector=outbound,
        device=device,
        path="speed",
        operator="gt",
        value=100,
    )
    dashboard = dashboard_services.create_dashboard(tenant=tenant, name=f"{label} dashboard")
    saved_query = dashboard_services.create_saved_query(
        tenant=tenant,
        name=f"{label} saved query",
        query={"devices": [device.pk], "keys": ["speed"], "from": "2025-01-01T00:00:00Z"},
    )
    panel = dashboard_services.create_panel(
        dashboard=dashboard,
        title=f"{label} panel",
        type="stat",
        query={"devices": [device.pk], "keys": ["speed"]},
    )
    event = audit_services.record_event(
        "custom.note", tenant_id=tenant.pk, device_id=device.pk, payload={"note": f"{label}-note"}
    )
    device_session_id = device_services.open_device_session(
        device.pk, tenant.pk, "tcp", f"198.51.100.{len(label)}:5000"
    )
    user_session = audit_services.open_user_session(
        tenant.pk, cast.viewer.pk, "198.51.100.77", f"{label}-agent"
    )
    side.objects = {
        "tenant": tenant,
        "device": device,
        "command": command,
        "connector": outbound,
        "webhook": webhook,
        "call": call,
        "log": log,
        "rule": rule,
        "dashboard": dashboard,
        "panel": panel,
        "saved_query": saved_query,
        "event": event,
        "device_session": DeviceSession.objects.get(pk=device_session_id),
        "user_session": user_session,
        "user": cast.viewer,
    }
    return side


def raise_id_sequences(floor: int) -> None:
    """Make every table's next id start above ``floor``, each table at its own height.

    Rows made afterwards get larger ids than any before, and no two kinds share an id, so
    a number in an answer says which of B's objects it is.
    """
    tables = [
        model._meta.db_table
        for model in django_apps.get_models()
        if isinstance(model._meta.pk, models.AutoField | models.BigAutoField)
    ]
    with connection.cursor() as cursor:
        for index, table in enumerate(tables):
            start = floor + index * 100_000
            # Never lower a sequence: on PostgreSQL earlier tests' ids are not given back.
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                    "GREATEST(%s, nextval(pg_get_serial_sequence(%s, 'id'))))",
                    [f'"{table}"', start, f'"{table}"'],
                )
            else:
                cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
                row = cursor.fetchone()
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)",
                    [table, max(start, row[0] if row else 0)],
                )


@dataclass
class World:
    a: Side
    b: Side
    superuser: User
    outsider: User

    def user(self, role: str) -> User:
        if role == "superuser":
            return self.superuser
        if role == "outsider":
            return self.outsider
        return self.a.cast.member(Role(role))


@pytest.fixture
def world(db: None, settings: Any) -> World:
    # Connector URLs on this machine are accepted; nothing listens there and no call is made.
    settings.CONNECTOR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    outbound_url = "http://127.0.0.1:9"
    a = build_side(make_cast("alpha"), "alpha", outbound_url)
    superuser = User.objects.create_superuser("root@example.com", PASSWORD)
    outsider = User.objects.create_user("outsider@example.com", PASSWORD)
    raise_id_sequences(FOREIGN_ID_FLOOR)
    b = build_side(make_cast("bravo"), "bravo", outbound_url)
    assert min(b.id(kind) for kind in b.objects) > FOREIGN_ID_FLOOR
    return World(a, b, superuser, outsider)


# What must never be seen, and what must not change.


def foreign_values(world: World) -> dict[str, str]:
    """B's values that no answer to A may contain, by what they are."""
    b = world.b
    values = {
        "tenant name": b.cast.tenant.name,
        "tenant slug": f'"{b.cast.tenant.slug}"',
        "device token": b.device_token,
        "device token prefix": b.objects["device"].token_prefix,
        "webhook token": b.webhook_token,
        "webhook token prefix": b.objects["webhook"].webhook_token_prefix,
        "device name": b.objects["device"].name,
        "external id": b.objects["device"].external_id,
        "telemetry value": "4242.4242",
        "telemetry marker": "bravo-tm",
        "command text": b.objects["command"].text,
        "connector secret": b.objects["connector"].secret,
        "connector url": "bravo-hook-path",
        "connector name": b.objects["connector"].name,
        "webhook name": b.objects["webhook"].name,
        "call context": "bravo-call-context",
        "log excerpt": "bravo-request-excerpt",
        "rule name": b.objects["rule"].name,
        "dashboard name": b.objects["dashboard"].name,
        "panel title": b.objects["panel"].title,
        "saved query name": b.objects["saved_query"].name,
        "audit note": "bravo-note",
        "session agent": "bravo-agent",
    }
    for role in Role:
        values[f"{role.value} email"] = b.cast.member(role).email
    for kind in b.objects:
        values[f"{kind} id"] = str(b.id(kind))
    return values


def owned_rows(tenant_id: int) -> list[Any]:
    """Everything of one tenant, to compare before and after a request."""
    rows: list[Any] = [list(Tenant.objects.filter(pk=tenant_id).values())]
    for model in django_apps.get_models():
        if not any(f.name == "tenant" for f in model._meta.fields):
            continue
        owned = model._default_manager.filter(tenant_id=tenant_id).values()
        rows.append(sorted(repr(row) for row in owned))
    members = UserRole.objects.filter(tenant_id=tenant_id).values_list("user_id", flat=True)
    rows.append(sorted(repr(row) for row in User.objects.filter(pk__in=list(members)).values()))
    return rows


# The route table.

Body = Callable[[World, Side], Any]


@dataclass(frozen=True)
class Route:
    """How to call one operation with tenant B's objects.

    ``params`` maps the path's object parameters, parent first, to kinds of object
    (``{tenant_id}`` and ``{role}`` are filled by the matrix). ``query`` and ``body``
    are built from the side whose ids they should name. ``admin`` is what tenant A's
    admin gets for a foreign object in tenant A, ``reference`` for A's objects with B's
    ids in the query or body (None when the route takes no ids there).
    """

    params: tuple[tuple[str, str], ...] = ()
    query: Body | None = None
    body: Body | None = None
    admin: frozenset[int] = frozenset({404})
    reference: frozenset[int] | None = None
    # Routes outside any tenant: called once, in A's own context, expecting this.
    public: frozenset[int] | None = None
    # A superuser sees every tenant here by design: not checked for them.
    superuser_sees_all: bool = False
    # B's values this route may show A's admin by design, with the reason in the table.
    allowed_values: tuple[str, ...] = ()


def statuses(*codes: int) -> frozenset[int]:
    return frozenset(codes)


def device_body(world: World, side: Side) -> dict[str, Any]:
    return {"name": "alpha new truck", "external_id": side.objects["device"].external_id}


def connector_body(world: World, side: Side) -> dict[str, Any]:
    return {
        "name": side.objects["connector"].name,
        "kind": "outbound_http",
        "config": {"url": "http://127.0.0.1:9/alpha-new", "timeout": 1},
    }


def rule_body(world: World, side: Side) -> dict[str, Any]:
    return {
        "name": "alpha new rule",
        "connector_id": side.id("connector"),
        "device_id": side.id("device"),
        "path": "speed",
        "operator": "gt",
        "value": 1,
    }


def panel_body(world: World, side: Side) -> dict[str, Any]:
    return {"title": "alpha new panel", "type": "stat", "saved_query_id": side.id("saved_query")}


def panel_query_body(world: World, side: Side) -> dict[str, Any]:
    return {"query": {"devices": [side.id("device")], "keys": ["speed"]}}


def saved_query_body(world: World, side: Side) -> dict[str, Any]:
    return {"name": "alpha new query", "query": {"devices": [side.id("device")], "keys": ["s"]}}


def audit_event_body(world: World, side: Side) -> dict[str, Any]:
    return {"type": "device.connected", "device_id": side.id("device")}


def device_filter(world: World, side: Side) -> dict[str, Any]:
    return {"device_id": side.id("device")}


def user_filter(world: World, side: Side) -> dict[str, Any]:
    return {"user_id": side.id("user"), "device_id": side.id("device")}


def telemetry_query(world: World, side: Side) -> dict[str, Any]:
    return {"device_id": side.id("device"), "from": "2024-12-01T00:00:00Z"}


def nothing(world: World, side: Side) -> dict[str, Any]:
    return {}


def login_body(world: World, side: Side) -> dict[str, Any]:
    return {"username": world.a.cast.viewer.email, "password": PASSWORD}


def refresh_body(world: World, side: Side) -> dict[str, Any]:
    return {"refresh_token": str(RefreshToken.for_user(world.a.cast.viewer))}


def register_body(world: World, side: Side) -> dict[str, Any]:
    # An email of tenant B: the 400 says only that it is taken, as registration must.
    return {"email": world.b.cast.viewer.email, "password": "Another-Horse-43"}


def ingest_body(world: World, side: Side) -> dict[str, Any]:
    return {"token": world.a.device_token, "ts": "2025-01-02T00:00:00Z", "data": {"n": 1}}


def teltonika_body(world: World, side: Side) -> dict[str, Any]:
    # A's token with B's IMEI: refused, and nothing reaches B's device.
    return {
        "token": world.a.device_token,
        "imei": world.b.objects["device"].external_id,
        "timestamp": 1_735_732_800_000,
        "gps": {"lat": 1.0, "lon": 2.0},
    }


def hook_body(world: World, side: Side) -> dict[str, Any]:
    # A's webhook naming B's device: the mapping looks in A's devices only.
    return {"imei": world.b.objects["device"].external_id, "time": T0.isoformat(), "values": {}}


DEVICE = (("device_id", "device"),)
CONNECTOR = (("connector_id", "connector"),)
DASHBOARD = (("dashboard_id", "dashboard"),)
PANEL = (("dashboard_id", "dashboard"), ("panel_id", "panel"))
LIST = statuses(200)

ROUTES: dict[tuple[str, str], Route] = {
    # accounts: no tenant; the caller's own data only.
    ("get", "/auth/me"): Route(public=LIST),
    ("post", "/auth/login"): Route(body=login_body, public=LIST),
    ("post", "/auth/refresh"): Route(body=refresh_body, public=LIST),
    ("post", "/auth/logout"): Route(body=refresh_body, public=statuses(204)),
    ("post", "/auth/register"): Route(body=register_body, public=statuses(400)),
    # system and device routes: no user, no tenant.
    ("get", "/health"): Route(public=LIST),
    ("get", "/health/live"): Route(public=LIST),
    ("post", "/ingest/http"): Route(body=ingest_body, public=statuses(201)),
    ("get", "/ingest/teltonika/ping"): Route(public=LIST),
    ("post", "/ingest/teltonika/ingest"): Route(body=teltonika_body, public=statuses(400)),
    ("post", "/hooks/{token}"): Route(body=hook_body, public=statuses(400)),
    # tenants and roles.
    ("get", "/tenants"): Route(public=LIST, superuser_sees_all=True),
    ("post", "/tenants"): Route(
        body=lambda world, side: {"name": "New fleet", "admin_user_id": side.id("user")},
        public=statuses(403),
        superuser_sees_all=True,
    ),
    ("get", "/tenants/{tenant_id}"): Route(admin=LIST),
    ("put", "/tenants/{tenant_id}"): Route(
        body=lambda world, side: {"name": "Fleet ALPHA renamed"}, admin=LIST
    ),
    ("patch", "/tenants/{tenant_id}"): Route(
        body=lambda world, side: {"name": "Fleet ALPHA renamed"}, admin=LIST
    ),
    ("get", "/tenants/{tenant_id}/users"): Route(admin=LIST),
    ("get", "/tenants/{tenant_id}/limits"): Route(admin=LIST),
    ("get", "/tenants/{tenant_id}/users/{user_id}/roles"): Route(
        params=(("user_id", "user"),), admin=LIST
    ),
    # Granting a role to any user id is the original API; the answer names the user.
    # docs/security.md lists this under known limits.
    ("post", "/tenants/{tenant_id}/users/{user_id}/roles/{role}"): Route(
        params=(("user_id", "user"),), admin=statuses(201), allowed_values=("viewer email",)
    ),
    ("delete", "/tenants/{tenant_id}/users/{user_id}/roles/{role}"): Route(
        params=(("user_id", "user"),)
    ),
    # devices and commands.
    ("get", "/devices"): Route(query=device_filter, admin=LIST, reference=LIST),
    ("post", "/devices"): Route(body=device_body, admin=statuses(400), reference=statuses(400)),
    ("get", "/devices/{device_id}"): Route(params=DEVICE),
    ("put", "/devices/{device_id}"): Route(
        params=DEVICE, body=lambda world, side: {"name": "renamed"}
    ),
    ("patch", "/devices/{device_id}"): Route(
        params=DEVICE, body=lambda world, side: {"is_active": False}
    ),
    ("delete", "/devices/{device_id}"): Route(params=DEVICE),
    ("post", "/devices/{device_id}/rotate-token"): Route(params=DEVICE),
    ("get", "/devices/{device_id}/commands"): Route(params=DEVICE),
    ("post", "/devices/{device_id}/commands"): Route(
        params=DEVICE, body=lambda world, side: {"text": "getinfo"}
    ),
    ("get", "/devices/{device_id}/commands/{command_id}"): Route(
        params=(*DEVICE, ("command_id", "command"))
    ),
    # telemetry.
    ("get", "/telemetry/query"): Route(query=telemetry_query, admin=statuses(404)),
    ("post", "/telemetry/query"): Route(body=telemetry_query, admin=statuses(404)),
    ("get", "/telemetry/latest"): Route(query=device_filter, admin=LIST),
    # connectors, calls, logs, rules.
    ("get", "/connectors"): Route(admin=LIST),
    ("post", "/connectors"): Route(body=connector_body, admin=statuses(201)),
    ("get", "/connectors/{connector_id}"): Route(params=CONNECTOR),
    ("put", "/connectors/{connector_id}"): Route(params=CONNECTOR, body=connector_body),
    ("patch", "/connectors/{connector_id}"): Route(
        params=CONNECTOR, body=lambda world, side: {"is_active": False}
    ),
    ("delete", "/connectors/{connector_id}"): Route(params=CONNECTOR),
    ("post", "/connectors/{connector_id}/call"): Route(
        params=CONNECTOR,
        body=lambda world, side: {"device_id": side.id("device"), "payload": {}},
        reference=statuses(400),
    ),
    ("post", "/connectors/{connector_id}/rotate-token"): Route(
        params=(("connector_id", "webhook"),)
    ),
    ("get", "/connectors/{connector_id}/calls"): Route(params=CONNECTOR),
    ("get", "/connectors/{connector_id}/calls/{call_id}"): Route(
        params=(*CONNECTOR, ("call_id", "call"))
    ),
    ("post", "/connectors/{connector_id}/calls/{call_id}/replay"): Route(
        params=(*CONNECTOR, ("call_id", "call"))
    ),
    ("get", "/connectors/{connector_id}/logs"): Route(params=CONNECTOR),
    ("get", "/connectors/{connector_id}/logs/{log_id}"): Route(
        params=(*CONNECTOR, ("log_id", "log"))
    ),
    ("get", "/rules"): Route(admin=LIST),
    ("post", "/rules"): Route(body=rule_body, admin=statuses(400), reference=statuses(400)),
    ("get", "/rules/{rule_id}"): Route(params=(("rule_id", "rule"),)),
    ("put", "/rules/{rule_id}"): Route(
        params=(("rule_id", "rule"),), body=rule_body, reference=statuses(400)
    ),
    ("patch", "/rules/{rule_id}"): Route(
        params=(("rule_id", "rule"),), body=rule_body, reference=statuses(400)
    ),
    ("delete", "/rules/{rule_id}"): Route(params=(("rule_id", "rule"),)),
    # dashboards, panels, saved queries.
    ("get", "/tenants/{tenant_id}/dashboards"): Route(admin=LIST),
    ("post", "/tenants/{tenant_id}/dashboards"): Route(
        body=lambda world, side: {"name": "alpha new board"}, admin=statuses(201)
    ),
    ("get", "/tenants/{tenant_id}/dashboards/{dashboard_id}"): Route(params=DASHBOARD),
    ("put", "/tenants/{tenant_id}/dashboards/{dashboard_id}"): Route(
        params=DASHBOARD, body=lambda world, side: {"name": "renamed"}
    ),
    ("patch", "/tenants/{tenant_id}/dashboards/{dashboard_id}"): Route(
        params=DASHBOARD, body=lambda world, side: {"name": "renamed"}
    ),
    ("delete", "/tenants/{tenant_id}/dashboards/{dashboard_id}"): Route(params=DASHBOARD),
    ("get", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels"): Route(params=DASHBOARD),
    ("post", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels"): Route(
        params=DASHBOARD, body=panel_body, reference=statuses(400)
    ),
    ("get", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels/{panel_id}"): Route(
        params=PANEL
    ),
    ("put", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels/{panel_id}"): Route(
        params=PANEL, body=panel_body, reference=statuses(400)
    ),
    ("patch", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels/{panel_id}"): Route(
        params=PANEL, body=panel_query_body, reference=statuses(400)
    ),
    ("delete", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels/{panel_id}"): Route(
        params=PANEL
    ),
    ("get", "/tenants/{tenant_id}/dashboards/{dashboard_id}/panels/{panel_id}/data"): Route(
        params=PANEL
    ),
    ("get", "/tenants/{tenant_id}/saved-queries"): Route(admin=LIST),
    ("post", "/tenants/{tenant_id}/saved-queries"): Route(
        body=saved_query_body, admin=statuses(400), reference=statuses(400)
    ),
    ("get", "/tenants/{tenant_id}/saved-queries/{saved_query_id}"): Route(
        params=(("saved_query_id", "saved_query"),)
    ),
    ("put", "/tenants/{tenant_id}/saved-queries/{saved_query_id}"): Route(
        params=(("saved_query_id", "saved_query"),), body=saved_query_body, reference=statuses(400)
    ),
    ("patch", "/tenants/{tenant_id}/saved-queries/{saved_query_id}"): Route(
        params=(("saved_query_id", "saved_query"),), body=saved_query_body, reference=statuses(400)
    ),
    ("delete", "/tenants/{tenant_id}/saved-queries/{saved_query_id}"): Route(
        params=(("saved_query_id", "saved_query"),)
    ),
    # audit events and sessions.
    ("get", "/audit/events"): Route(query=user_filter, admin=LIST),
    ("post", "/audit/events"): Route(body=audit_event_body, admin=statuses(400)),
    ("get", "/audit/events/{event_id}"): Route(params=(("event_id", "event"),)),
    ("get", "/audit/device-sessions"): Route(query=device_filter, admin=LIST),
    ("get", "/audit/device-sessions/{session_id}"): Route(
        params=(("session_id", "device_session"),)
    ),
    ("get", "/audit/user-sessions"): Route(query=user_filter, admin=LIST),
    ("get", "/audit/user-sessions/{session_id}"): Route(params=(("session_id", "user_session"),)),
}


# The schema and the calls.


@cache
def schema_operations() -> tuple[tuple[str, str], ...]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    return tuple(
        (method, path)
        for path, operations in schema["paths"].items()
        for method in METHODS
        if method in operations
    )


@dataclass(frozen=True)
class Call:
    """One request of the matrix and what may answer it."""

    label: str
    method: str
    path: str
    query: dict[str, Any]
    body: Any
    tenant_header: int | None
    expected: frozenset[int]
    allowed_values: tuple[str, ...]


def fill_path(template: str, values: dict[str, Any]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    assert "{" not in path, f"{template}: a path parameter has no value in the matrix"
    return path


def calls_for(
    world: World, method: str, template: str, route: Route, role: str, mode: str
) -> list[Call]:
    """The requests one role makes on one route in one mode."""
    a, b = world.a, world.b
    is_admin = role in {"admin", "superuser"}
    low_role = statuses(403)

    def call(label: str, path_side: dict[str, Side], refs: Side, tenant: Side, codes: Any) -> Call:
        values: dict[str, Any] = {"tenant_id": tenant.tenant_id, "role": "viewer"}
        values.update({name: path_side[name].id(kind) for name, kind in route.params})
        if "{token}" in template:
            values["token"] = a.webhook_token
        expected = frozenset(codes) if is_admin else frozenset(codes) | low_role
        return Call(
            label=label,
            method=method,
            path=fill_path(template, values),
            query=route.query(world, refs) if route.query else {},
            body=route.body(world, refs) if route.body else None,
            tenant_header=None if "{tenant_id}" in template else tenant.tenant_id,
            expected=expected,
            allowed_values=route.allowed_values,
        )

    names = [name for name, _ in route.params]
    if route.public is not None:
        if mode != "foreign object" or (role == "superuser" and route.superuser_sees_all):
            return []
        public = call("public", dict.fromkeys(names, a), b, a, route.public)
        return [replace(public, tenant_header=None, expected=route.public)]
    if mode == "foreign tenant":
        return [call("foreign tenant", dict.fromkeys(names, b), b, b, low_role)]

    made = [call("foreign object", dict.fromkeys(names, b), b, a, route.admin)]
    if len(names) >= 2:
        parents = dict.fromkeys(names[:-1], a) | {names[-1]: b}
        made.append(call("foreign child", parents, b, a, route.admin))
    if route.reference is not None and names:
        made.append(call("foreign reference", dict.fromkeys(names, a), b, a, route.reference))
    return made


def client_of(user: User, tenant_header: int | None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}
    if tenant_header is not None:
        headers["HTTP_X_TENANT_ID"] = str(tenant_header)
    client.credentials(**headers)
    return client


def answer_text(response: Any) -> str:
    body = (
        b"".join(response.streaming_content) if response.streaming else response.content
    ).decode(errors="replace")
    headers = " ".join(f"{name}: {value}" for name, value in response.items())
    return f"{headers}\n{body}"


def leaked(text: str, sent: str, values: dict[str, str], allowed: tuple[str, ...]) -> list[str]:
    """The names of B's values found in an answer, other than those the caller sent."""
    found = []
    for name, value in values.items():
        if name in allowed or not value or value in sent:
            continue
        pattern = rf"(?<![\d.]){re.escape(value)}(?![\d])" if value.isdigit() else re.escape(value)
        if re.search(pattern, text):
            found.append(name)
    return found


def send(user: User, call: Call, body: str, world: World) -> tuple[Any, str, Any]:
    """Make the call; its answer, as text too, and B's rows after it if it could write."""
    query = f"?{urlencode(call.query)}" if call.query else ""
    response = client_of(user, call.tenant_header).generic(
        call.method.upper(), call.path + query, body, content_type="application/json"
    )
    after = owned_rows(world.b.tenant_id) if call.method != "get" else None
    return response, answer_text(response), after


def run_matrix(world: World, role: str, mode: str) -> list[str]:
    values = foreign_values(world)
    untouched = owned_rows(world.b.tenant_id)
    user = world.user(role)
    failures: list[str] = []
    for method, template in schema_operations():
        route = ROUTES.get((method, template))
        if route is None:
            continue  # Reported by test_every_route_of_the_schema_has_a_matrix_entry.
        for call in calls_for(world, method, template, route, role, mode):
            body = json.dumps(call.body) if call.body is not None else ""
            if route.public is not None:
                # Device routes store points in a durable transaction of their own, which
                # cannot nest in a savepoint; what they store is A's and harms no other call.
                response, text, after = send(user, call, body, world)
            else:
                with transaction.atomic():
                    response, text, after = send(user, call, body, world)
                    transaction.set_rollback(True)

            where = f"{method.upper()} {call.path} ({call.label}, {role})"
            if response.status_code not in call.expected:
                failures.append(
                    f"{where}: {response.status_code}, expected one of "
                    f"{sorted(call.expected)}: {text[-300:]}"
                )
            sent = f"{call.path} {call.query} {body} {call.tenant_header}"
            if names := leaked(text, sent, values, call.allowed_values):
                failures.append(f"{where}: the answer shows tenant B's {', '.join(names)}")
            if after is not None and after != untouched:
                failures.append(f"{where}: tenant B's data changed")
    return failures


# The tests.


def test_every_route_of_the_schema_has_a_matrix_entry() -> None:
    operations = set(schema_operations())
    missing = sorted(operations - set(ROUTES))
    stale = sorted(set(ROUTES) - operations)

    assert not missing, (
        "Routes without a tenancy matrix entry; add each to ROUTES in "
        f"quantumfleet/tests/test_tenancy_matrix.py: {[f'{m.upper()} {p}' for m, p in missing]}"
    )
    assert not stale, f"Matrix entries for routes the schema no longer has: {stale}"


@pytest.mark.parametrize("role", ["viewer", "manager", "admin", "outsider"])
def test_no_role_of_tenant_a_reaches_tenant_b_by_naming_it(world: World, role: str) -> None:
    failures = run_matrix(world, role, "foreign tenant")

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["viewer", "manager", "admin", "superuser"])
def test_no_role_acting_in_tenant_a_reaches_tenant_bs_objects(world: World, role: str) -> None:
    failures = run_matrix(world, role, "foreign object")

    assert not failures, "\n".join(failures)


def test_the_matrix_sees_a_leak(world: World) -> None:
    """The detector itself: B's rows in an answer and a changed row are both reported."""
    values = foreign_values(world)
    device = world.b.objects["device"]
    shown = json.dumps({"id": device.pk, "name": device.name})

    assert leaked(shown, "", values, ()) == ["device name", "device id"]
    assert leaked(shown, f"/devices/{device.pk}", values, ("device name",)) == []
    before = owned_rows(world.b.tenant_id)
    device_services.update_device(device, name="changed")
    assert owned_rows(world.b.tenant_id) != before
