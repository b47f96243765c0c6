"""Schemathesis against the OpenAPI schema, once per role.

Every operation of ``/api/schema/`` is called with requests generated from the schema,
in-process through the WSGI application, as an anonymous caller, as tenant A's viewer,
manager and admin, and as a superuser acting in tenant A. Each answer must:

- not be a 5xx (``not_a_server_error``);
- have a status code the operation documents (``status_code_conformance``);
- have the documented content type (``content_type_conformance``) and a body that
  validates against the documented schema for that status (``response_schema_conformance``).

The requests mix three kinds: valid data naming tenant A's real objects in the path (a
device with telemetry, connectors, a rule, a dashboard with a panel, a saved query...),
valid data with generated ids (the 404 path), and data that breaks the schema (the 400
path). The objects come from the tenancy matrix's ``build_side`` and the path parameters
from its ``ROUTES`` table, so a route is described once.

Generation is derandomized and bounded (``MAX_EXAMPLES`` per operation and role, no
shrinking), so CI is repeatable and takes well under a minute per database. A failure
names the operation, the role, the check and a curl command that reproduces it.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import make_cast
from quantumfleet.tests.test_tenancy_matrix import ROUTES, Side, build_side

pytestmark = pytest.mark.django_db
logger = logging.getLogger(__name__)

# Calls per operation and role; SCHEMA_FUZZ_EXAMPLES raises it for a longer run by hand,
# and SCHEMA_FUZZ_SEED draws other inputs than CI's fixed ones.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "4"))
SEED = os.environ.get("SCHEMA_FUZZ_SEED")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = ["anonymous", "viewer", "manager", "admin", "superuser"]
METHODS = ("get", "post", "put", "patch", "delete")
PATH_PARAMETER = re.compile(r"{(\w+)}")
# Routes that store telemetry open a durable transaction of their own, which cannot nest
# in the savepoint that undoes every other call; what they store is tenant A's.
DURABLE_PREFIXES = ("/ingest/", "/hooks/")


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """The project's WSGI application, sharing the test's database connection.

    Django closes the connection at the end of each request; inside the test's
    transaction that would abort it, so, as Django's own test client does, the closing
    handlers are detached while the application is in use.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@cache
def application() -> WSGIHandler:
    return WSGIHandler()


@cache
def load_schema() -> Any:
    """The schema as the application serves it, loaded once for every role."""
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application())


@pytest.fixture
def side(db: None, settings: Any) -> Side:
    # Connector URLs on this machine are accepted; nothing listens there and no call is made
    # anywhere else.
    settings.CONNECTOR_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    return build_side(make_cast("alpha"), "alpha", "http://127.0.0.1:9")


def known_path_parameters(side: Side, method: str, path: str) -> dict[str, Any]:
    """Tenant A's real ids for the operation's path, from the tenancy matrix's table."""
    values: dict[str, Any] = {}
    route = ROUTES.get((method, path))
    if route is not None:
        values.update({name: side.id(kind) for name, kind in route.params})
    if "{tenant_id}" in path:
        values["tenant_id"] = side.tenant_id
    if "{role}" in path:
        values["role"] = "viewer"
    if "{token}" in path:
        values["token"] = side.webhook_token
    return values


def headers_for(role: str, side: Side, path: str, superuser: Any) -> dict[str, str]:
    if path.startswith("/ingest/"):
        return {"Authorization": f"Bearer {side.device_token}"}
    if role == "anonymous":
        return {}
    user = superuser if role == "superuser" else getattr(side.cast, role)
    headers = {"Authorization": f"Bearer {AccessToken.for_user(user)}"}
    if "{tenant_id}" not in path:
        headers["X-Tenant-Id"] = str(side.tenant_id)
    return headers


def fuzz_operation(operation: Any, side: Side, role: str, superuser: Any) -> int:
    """Run the checks on up to ``MAX_EXAMPLES`` generated calls of one operation; the
    number of calls made."""
    method, path = operation.method.lower(), operation.path
    headers = headers_for(role, side, path, superuser)
    known = known_path_parameters(side, method, path)
    strategies = [
        operation.as_strategy(path_parameters=known, headers=headers),
        operation.as_strategy(
            generation_mode=schemathesis.GenerationMode.NEGATIVE,
            path_parameters=known,
            headers=headers,
        ),
    ]
    if known:
        strategies.append(operation.as_strategy(headers=headers))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        calls.append(case)
        if path.startswith(DURABLE_PREFIXES):
            case.call_and_validate(checks=CHECKS)
            return
        with transaction.atomic():
            case.call_and_validate(checks=CHECKS)
            transaction.set_rollback(True)

    calls: list[Any] = []
    if SEED is not None:
        seed(int(SEED))(run)
    run()
    return len(calls)


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_as_documented(
    role: str, side: Side, superuser: Any, wsgi_app: WSGIHandler
) -> None:
    schema = load_schema()
    failures: list[str] = []
    started = time.monotonic()
    count = calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        count += 1
        try:
            calls += fuzz_operation(operation, side, role, superuser)
        except (Exception, FailureGroup) as error:
            failures.append(f"{operation.method.upper()} {operation.path} as {role}: {error}")
    logger.info(
        "schema_fuzz.done role=%s operations=%d calls=%d seconds=%.1f",
        role,
        count,
        calls,
        time.monotonic() - started,
    )

    assert count > 70
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("role", ["anonymous", "admin"])
def test_every_path_answers_options_and_undocumented_methods_without_a_server_error(
    role: str, side: Side, superuser: Any, wsgi_app: WSGIHandler
) -> None:
    """What ``st run`` also sends: OPTIONS, and the methods a path does not document.

    OPTIONS describes the path (200, or 401/403 for a caller without access); an
    undocumented method is a 405, or the 401/403 that comes first; never a 5xx or HTML.
    """
    schema = load_schema()
    client = Client(raise_request_exception=False)
    failures = []
    for path, operations in schema.raw_schema["paths"].items():
        method, *_ = (name for name in operations if name in METHODS)
        known = known_path_parameters(side, method, path)
        url = path.format(**{name: known.get(name, 1) for name in PATH_PARAMETER.findall(path)})
        headers = headers_for(role, side, path, superuser)
        for undocumented in ["options", *(name for name in METHODS if name not in operations)]:
            with transaction.atomic():
                response = client.generic(undocumented.upper(), url, headers=headers)
                transaction.set_rollback(True)
            allowed = {200} if undocumented == "options" else {405}
            if response.status_code not in allowed | {401, 403} or (
                response["Content-Type"] != "application/json"
            ):
                failures.append(
                    f"{undocumented.upper()} {url} as {role}: {response.status_code} "
                    f"{response['Content-Type']} {response.content[:200]!r}"
                )

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["anonymous", "admin"])
def test_a_body_of_another_media_type_gets_a_documented_answer(
    role: str, side: Side, superuser: Any, wsgi_app: WSGIHandler
) -> None:
    """A body sent as text/plain, or with no type at all, as ``st run`` does: each
    operation that takes a body answers with a status it documents (415 or 400), in JSON."""
    schema = load_schema()
    client = Client(raise_request_exception=False)
    failures = []
    for path, operations in schema.raw_schema["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS or "requestBody" not in operation:
                continue
            known = known_path_parameters(side, method, path)
            url = path.format(**{name: known.get(name, 1) for name in PATH_PARAMETER.findall(path)})
            headers = headers_for(role, side, path, superuser)
            for content_type in ["text/plain", ""]:
                with transaction.atomic():
                    response = client.generic(
                        method.upper(), url, b"device_id=1", content_type, headers=headers
                    )
                    transaction.set_rollback(True)
                if str(response.status_code) not in operation["responses"] or (
                    response["Content-Type"] != "application/json"
                ):
                    failures.append(
                        f"{method.upper()} {url} ({content_type or 'no type'}) as {role}: "
                        f"{response.status_code} {response.content[:200]!r}"
                    )

    assert not failures, "\n".join(failures)
