"""Private services for the fault runs, started once per session, and a summary of the runs.

The fault runs restart PostgreSQL, Redis and Mosquitto, so they never touch the shared
ones: the session starts its own on free ports in a temporary directory, migrates the
private database once, and removes everything at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.runs import Report, migrate
from tests.faults.services import PrivateServices, ServiceUnavailableError

REPORTS: list[Report] = []


@pytest.fixture(scope="session")
def private_services() -> Iterator[PrivateServices]:
    if not os.environ.get("DATABASE_URL"):
        pytest.skip(
            "fault runs need PostgreSQL (they run on private PostgreSQL, Redis and Mosquitto "
            "instances): set DATABASE_URL, as the PostgreSQL pass of CI does"
        )
    services = PrivateServices()
    try:
        services.start(mosquitto=True)
    except ServiceUnavailableError as error:
        services.close()
        pytest.skip(f"fault runs need their own services: {error}")
    try:
        migrate(services)
        yield services
    finally:
        services.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault runs")
    for report in REPORTS:
        terminalreporter.write_line(report.line())
