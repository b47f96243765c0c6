"""Device sessions as daemons open them and read them back."""

from __future__ import annotations

import pytest

from apps.devices import services
from apps.devices.models import DeviceSession

pytestmark = pytest.mark.django_db


def test_opening_a_session_ends_the_devices_open_ones(tenant_a):
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Tracker")
    first = services.open_device_session(device.pk, tenant_a.tenant.pk, "teltonika-tcp", "a:1")

    second = services.open_device_session(device.pk, tenant_a.tenant.pk, "teltonika-tcp", "b:2")

    assert DeviceSession.objects.get(pk=first).close_reason == "replaced"
    assert DeviceSession.objects.get(pk=second).ended_at is None


def test_sessions_opened_after_an_id_are_read_in_turns_by_transport(tenant_a, tenant_b):
    one, _ = services.create_device(tenant=tenant_a.tenant, name="One")
    two, _ = services.create_device(tenant=tenant_b.tenant, name="Two")
    start = services.latest_session_id()
    opened = [
        services.open_device_session(device.pk, device.tenant_id, transport, "peer:1")
        for device, transport in [
            (one, "teltonika-tcp"),
            (two, "mqtt"),
            (two, "teltonika-tcp"),
            (one, "teltonika-tcp"),
        ]
    ]

    first_turn = services.sessions_opened_after(start, "teltonika-tcp", limit=2)
    second_turn = services.sessions_opened_after(first_turn[-1][0], "teltonika-tcp", limit=2)

    assert first_turn == [(opened[0], one.pk), (opened[2], two.pk)]
    assert second_turn == [(opened[3], one.pk)]
    assert services.sessions_opened_after(opened[3], "teltonika-tcp", limit=2) == []
    assert services.latest_session_id() == opened[3]


def test_a_replaced_session_keeps_its_end_and_takes_the_final_totals(tenant_a):
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Tracker")
    old = services.open_device_session(device.pk, tenant_a.tenant.pk, "teltonika-tcp", "a:1")
    services.open_device_session(device.pk, tenant_a.tenant.pk, "teltonika-tcp", "b:2")
    replaced_at = DeviceSession.objects.get(pk=old).ended_at

    services.close_device_session(old, records=40, bytes_received=9000, reason="closed_by_device")

    session = DeviceSession.objects.get(pk=old)
    assert (session.records, session.bytes_received) == (40, 9000)
    assert (session.ended_at, session.close_reason) == (replaced_at, "replaced")


def test_closing_an_open_session_ends_it_with_its_reason(tenant_a):
    device, _ = services.create_device(tenant=tenant_a.tenant, name="Tracker")
    session_id = services.open_device_session(device.pk, tenant_a.tenant.pk, "mqtt", "a:1")

    services.close_device_session(session_id, records=3, bytes_received=120, reason="idle")

    session = DeviceSession.objects.get(pk=session_id)
    assert session.ended_at is not None
    assert session.last_seen == session.ended_at
    assert (session.records, session.bytes_received, session.close_reason) == (3, 120, "idle")
