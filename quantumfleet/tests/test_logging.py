from __future__ import annotations

import logging

from quantumfleet.logging import KeyValueFormatter


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "apps.devices", "levelname": "INFO", "msg": "device.created"}
    )
    record.__dict__.update(extra)
    return record


def test_it_appends_the_event_fields():
    formatter = KeyValueFormatter("%(levelname)s %(name)s %(message)s")

    line = formatter.format(make_record(device_id=7, tenant_id=2))

    assert line == "INFO apps.devices device.created device_id=7 tenant_id=2"


def test_a_record_without_fields_is_left_alone():
    formatter = KeyValueFormatter("%(message)s")

    assert formatter.format(make_record()) == "device.created"
