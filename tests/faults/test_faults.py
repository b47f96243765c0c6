"""Loss and duplication under faults, for each transport.

Each run drives 30 devices of 100 points each (explicit device times), every device
resending what was not acknowledged, while one fault happens once 40 % of the points are
acknowledged. Every point a device saw acknowledged must be stored exactly once.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import REPORTS
from tests.faults.runs import FAULTS, Cast, Plan, cast_runs, run_fault
from tests.faults.services import PrivateServices

DEVICES = 30
RUNS = [(transport, fault) for transport, faults in FAULTS.items() for fault in faults]
# Faults the devices themselves feel: their connection or their answers fail meanwhile.
FELT_BY_DEVICES = {
    ("http", "kill"),
    ("http", "postgres"),
    ("teltonika", "kill"),
    ("teltonika", "postgres"),
}


@pytest.fixture(scope="module")
def casts(private_services: PrivateServices) -> dict[tuple[str, str], Cast]:
    """Every run's tenant and devices, made at once: Django starts once, not per run."""
    made = cast_runs(private_services, [transport for transport, _ in RUNS], DEVICES)
    return dict(zip(RUNS, made, strict=True))


@pytest.mark.parametrize(("transport", "fault"), RUNS, ids=[f"{t}-{f}" for t, f in RUNS])
def test_every_acknowledged_point_is_stored_exactly_once(
    private_services: PrivateServices,
    casts: dict[tuple[str, str], Cast],
    transport: str,
    fault: str,
) -> None:
    report = run_fault(
        private_services, transport, fault, Plan(devices=DEVICES), cast=casts[transport, fault]
    )
    REPORTS.append(report)
    detail = (
        f"{report.line()}\nanswers: {report.refusals}\nfailures seen by devices: "
        f"{report.failures}\n{report.log_tail}"
    )

    assert report.mid_stream, f"the fault did not happen mid-stream: {detail}"
    assert not report.crashed, f"the receiving process died: {detail}"
    assert report.acknowledged == report.sent, f"points never acknowledged: {detail}"
    assert report.lost == 0, detail
    assert report.duplicates == 0, detail
    assert report.unexpected == 0, detail
    assert report.stored == report.sent, detail
    if (transport, fault) in FELT_BY_DEVICES:
        assert report.resent > 0, f"no device felt the fault: {detail}"
    if (transport, fault) == ("http", "postgres"):
        # Told to send again, not told of a bug.
        assert report.refusals.get("HTTP 503", 0) > 0, detail
        assert "HTTP 500" not in report.refusals, detail
