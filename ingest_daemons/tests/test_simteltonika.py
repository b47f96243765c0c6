"""``manage.py simteltonika`` against a running daemon: packets sent, ACKed and stored."""

from __future__ import annotations

import io
import itertools
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.telemetry.models import Telemetry
from ingest_daemons.tests.conftest import IMEI

pytestmark = pytest.mark.django_db(transaction=True)


def simulate(port: int, **options) -> str:
    out = io.StringIO()
    call_command("simteltonika", port=port, imei=IMEI, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_it_sends_packets_and_reports_what_was_acknowledged(daemon, tracker_device):
    summary = simulate(daemon.port, count=2, records_per_packet=3)

    assert "1 device(s): 2 packets, 6 records acknowledged" in summary
    assert Telemetry.objects.filter(device=tracker_device).count() == 6


def test_an_interval_paces_the_packets(daemon, tracker_device):
    summary = simulate(daemon.port, duration=1.1, interval=0.5, records_per_packet=1)

    packets = int(re.search(r"(\d+) packets", summary).group(1))
    # Each tracker starts its period within the first interval, then sends every 0.5 s:
    # two or three packets in 1.1 s, where sending on each ACK would have made hundreds.
    assert packets in (2, 3)
    stored = Telemetry.objects.filter(device=tracker_device).order_by("ts")
    gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(stored)]
    assert gaps == pytest.approx([0.5] * (packets - 1), abs=0.2)


def test_more_records_than_a_packet_holds_are_refused():
    with pytest.raises(CommandError, match="at most 255"):
        simulate(5072, records_per_packet=256)
