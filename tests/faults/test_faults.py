"""Loss and duplication under faults, for each transport.

Each run drives 30 devices of 100 points each (explicit device times), every device
resending what was not acknowledged, while one fault happens once 40 % of the points are
acknowledged. Every point a device saw acknowledged must be stored exactly once.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import REPORTS
from tests.faults.runs import FAULTS, run_fault
from tests.faults.services import PrivateServices

RUNS = [(transport, fault) for transport, faults in FAULTS.items() for fault in faults]
# Faults the devices themselves feel: their connection or their answers fail meanwhile.
FELT_BY_DEVICES = {
    ("http", "kill"),
    ("http", "postgres"),
    ("teltonika", "kill"),
    ("teltonika", "postgres"),
}


@pytest.mark.parametrize(("transport", "fault"), RUNS, ids=[f"{t}-{f}" for t, f in RUNS])
def test_every_acknowledged_point_is_stored_exactly_once(
    private_services: PrivateServices, transport: str, fault: str
) -> None:
    report = run_fault(private_services, transport, fault)
    REPORTS.append(report)
    detail = f"{report.line()}\nfailures seen by devices: {report.failures}\n{report.log_tail}"

    assert report.mid_stream, f"the fault did not happen mid-stream: {detail}"
    assert report.acknowledged == report.sent, f"points never acknowledged: {detail}"
    assert report.lost == 0, detail
    assert report.duplicates == 0, detail
    assert report.unexpected == 0, detail
    assert report.stored == report.sent, detail
    if (transport, fault) in FELT_BY_DEVICES:
        assert report.resent > 0, f"no device felt the fault: {detail}"
