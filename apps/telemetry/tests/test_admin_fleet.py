"""The fleet overview of the admin and the ingest-rate samples it reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.connectors.models import Connector, ConnectorKind, ConnectorLog, Direction, LogStatus
from apps.devices import services
from apps.devices.models import DeviceSession
from apps.telemetry.ingest_rates import ingest_rates, sample_ingest_counts
from apps.telemetry.models import DeviceState, IngestCountSample
from apps.telemetry.services import Point, ingest_points

pytestmark = pytest.mark.django_db

FLEET = "/admin/fleet/"


def store(device, count: int, minutes_ago: int = 0) -> None:
    end = timezone.now() - timedelta(minutes=minutes_ago)
    ingest_points(
        [
            Point(
                device.tenant_id,
                device.pk,
                end - timedelta(seconds=index),
                {"gps": {"lat": 45.0, "lon": 7.0, "speed": 50 + index}, "io": {"239": 1}},
            )
            for index in range(count)
        ]
    )


@pytest.fixture
def fleet(tenant_a, tenant_b):
    online, _ = services.create_device(tenant=tenant_a.tenant, name="Online truck", protocol="mqtt")
    stale, _ = services.create_device(tenant=tenant_a.tenant, name="Stale van", protocol="http")
    silent, _ = services.create_device(tenant=tenant_a.tenant, name="Silent bus")
    foreign, _ = services.create_device(
        tenant=tenant_b.tenant, name="Bravo car", protocol="teltonika"
    )
    store(online, 3)
    store(stale, 2)
    store(foreign, 1)
    DeviceState.objects.filter(device=stale).update(
        last_received_at=timezone.now() - timedelta(hours=2)
    )
    return {"online": online, "stale": stale, "silent": silent, "foreign": foreign}


def staff_admin(cast) -> Client:
    cast.admin.is_staff = True
    cast.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(cast.admin)
    return client


def test_the_index_links_to_the_fleet_overview(operator):
    assert FLEET in operator.get(reverse("admin:index")).content.decode()


def test_the_fleet_lists_devices_with_their_state_and_latest_values(operator, fleet, tenant_a):
    response = operator.get(FLEET)

    assert response.status_code == 200
    rows = {row.device.name: row for row in response.context["rows"]}
    assert rows["Online truck"].online
    assert not rows["Stale van"].online
    assert not rows["Silent bus"].online
    assert ("gps.lat", 45.0) in rows["Online truck"].values
    page = response.content.decode()
    assert "never reported" in page
    assert reverse("admin:devices_device_overview", args=[fleet["online"].pk]) in page
    summary = {tenant.name: tenant for tenant in response.context["tenants"]}
    assert (
        summary[tenant_a.tenant.name].device_total,
        summary[tenant_a.tenant.name].device_online,
    ) == (
        3,
        1,
    )


@pytest.mark.parametrize(
    ("state", "names"), [("online", {"Online truck", "Bravo car"}), ("never", {"Silent bus"})]
)
def test_the_fleet_filters_by_state(operator, fleet, state, names):
    response = operator.get(FLEET, {"state": state})

    assert {row.device.name for row in response.context["rows"]} == names


def test_the_online_window_is_a_setting(operator, fleet, settings):
    settings.ADMIN_ONLINE_WINDOW_SECONDS = 3 * 3600

    rows = operator.get(FLEET).context["rows"]

    assert {row.device.name for row in rows if row.online} == {
        "Online truck",
        "Stale van",
        "Bravo car",
    }


def test_the_device_list_is_paged(operator, tenant_a):
    for index in range(55):
        services.create_device(tenant=tenant_a.tenant, name=f"Unit {index:02}")

    first = operator.get(FLEET)
    second = operator.get(FLEET, {"page": 2})

    assert len(first.context["rows"]) == 50
    assert len(second.context["rows"]) == 5


def test_a_tenant_admin_sees_only_their_tenants_fleet(tenant_a, tenant_b, fleet):
    response = staff_admin(tenant_a).get(FLEET)

    page = response.content.decode()
    assert "Online truck" in page
    assert "Bravo car" not in page
    assert tenant_b.tenant.name not in page


def test_staff_without_a_tenant_is_refused(outsider):
    outsider.is_staff = True
    outsider.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(outsider)

    assert client.get(FLEET).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(FLEET)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_ingest_rates_per_transport_come_from_two_samples(operator, fleet, tenant_a):
    now = timezone.now()
    sample_ingest_counts(now - timedelta(minutes=60))
    store(fleet["online"], 10, minutes_ago=0)  # +10 mqtt points for tenant A
    store(fleet["foreign"], 4, minutes_ago=0)
    sample_ingest_counts(now)

    everyone = {rate.protocol: rate for rate in ingest_rates(None, now).rates}
    alpha_only = {
        rate.protocol: rate for rate in ingest_rates(frozenset({tenant_a.tenant.pk}), now).rates
    }
    page = operator.get(FLEET).content.decode()

    assert everyone["mqtt"].points == 10
    assert everyone["mqtt"].per_minute == pytest.approx(10 / 60, abs=0.1)
    assert everyone["teltonika"].points == 4
    assert "teltonika" not in alpha_only
    assert alpha_only["mqtt"].points == 10
    assert alpha_only["http"].points == 0
    assert 'id="fleet-ingest-rates"' in page


def test_without_two_samples_the_page_says_so(operator, fleet):
    sample_ingest_counts()

    page = operator.get(FLEET).content.decode()

    assert 'id="fleet-ingest-rates-empty"' in page


def test_samples_older_than_a_day_are_dropped(fleet):
    now = timezone.now()
    sample_ingest_counts(now - timedelta(days=2))
    sample_ingest_counts(now)

    assert not IngestCountSample.objects.filter(taken_at__lt=now - timedelta(days=1)).exists()


def test_rejected_input_and_connector_failures_are_listed(operator, fleet, tenant_a, tenant_b):
    hook = Connector.objects.create(
        tenant=tenant_a.tenant, name="Inbound", kind=ConnectorKind.WEBHOOK, config={}
    )
    sink = Connector.objects.create(
        tenant=tenant_b.tenant, name="Sink", kind=ConnectorKind.OUTBOUND_HTTP, config={}
    )
    ConnectorLog.objects.create(
        tenant=tenant_a.tenant,
        connector=hook,
        direction=Direction.INBOUND,
        status=LogStatus.REJECTED,
        http_status=400,
        error="data.speed: not a number",
    )
    ConnectorLog.objects.create(
        tenant=tenant_b.tenant,
        connector=sink,
        direction=Direction.OUTBOUND,
        status=LogStatus.DEAD,
        error="connection refused by sink",
    )
    now = timezone.now()
    DeviceSession.objects.create(
        tenant=tenant_a.tenant,
        device=fleet["silent"],
        transport="teltonika-tcp",
        peer="198.51.100.4:5000",
        started_at=now,
        last_seen=now,
        ended_at=now,
        close_reason="bad_frames",
    )

    operator_page = operator.get(FLEET).content.decode()
    alpha_page = staff_admin(tenant_a).get(FLEET).content.decode()

    assert "data.speed: not a number" in operator_page
    assert "bad_frames" in operator_page
    assert "connection refused by sink" in operator_page
    assert "data.speed: not a number" in alpha_page
    assert "connection refused by sink" not in alpha_page


def fleet_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(FLEET).status_code == 200
    return len(captured.captured_queries)


def test_the_fleet_page_costs_the_same_queries_with_many_devices(operator, fleet, tenant_a):
    few = fleet_queries(operator)

    for index in range(30):
        device, _ = services.create_device(tenant=tenant_a.tenant, name=f"Extra {index:02}")
        store(device, 1)
    many = fleet_queries(operator)

    assert many == few
