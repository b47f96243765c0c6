"""POST and GET /audit/events: roles, append-only, malformed events, filters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.audit import services
from apps.audit.models import AuditEvent
from apps.devices.models import DeviceSession
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

WRITERS = [Role.ADMIN, Role.MANAGER]


class TestRoles:
    @pytest.mark.parametrize("role", WRITERS)
    def test_managers_and_admins_record_and_read_events(self, client_for, tenant_a, role):
        client = client_for(tenant_a.member(role))

        created = client.post("/audit/events", {"type": "report.exported"}, format="json")
        listed = client.get("/audit/events")
        detail = client.get(f"/audit/events/{created.json()['id']}")

        assert created.status_code == 201
        assert created.json()["tenant_id"] == tenant_a.tenant.pk
        assert [event["type"] for event in listed.json()] == ["report.exported"]
        assert detail.json() == created.json()

    def test_viewers_neither_read_nor_record_events(self, client_for, tenant_a):
        client = client_for(tenant_a.viewer)
        services.record_event("report.exported", tenant_id=tenant_a.tenant.pk)

        responses = [
            client.get("/audit/events"),
            client.get(f"/audit/events/{AuditEvent.objects.get().pk}"),
            client.post("/audit/events", {"type": "report.exported"}, format="json"),
        ]

        assert [response.status_code for response in responses] == [403, 403, 403]
        assert AuditEvent.objects.count() == 1

    def test_outsiders_and_the_anonymous_are_refused(self, client_for, anonymous, outsider):
        assert client_for(outsider).get("/audit/events").status_code == 403
        assert anonymous.post("/audit/events", {"type": "x.y"}).status_code == 401
        assert not AuditEvent.objects.exists()

    @pytest.mark.parametrize("role", list(Role))
    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_events_are_append_only(self, client_for, tenant_a, role, method):
        event = services.record_event("report.exported", tenant_id=tenant_a.tenant.pk)
        client = client_for(tenant_a.member(role))

        response = getattr(client, method)(
            f"/audit/events/{event.pk}", {"type": "changed.it"}, format="json"
        )

        assert response.status_code in (403, 405)
        assert AuditEvent.objects.get().type == "report.exported"


class TestRecording:
    def test_the_callers_address_and_user_agent_are_the_default(self, client_for, tenant_a):
        client = client_for(tenant_a.manager)

        own = client.post(
            "/audit/events",
            {"type": "report.exported"},
            format="json",
            HTTP_USER_AGENT="fleet-cli/1.0",
            REMOTE_ADDR="198.51.100.7",
        ).json()
        reported = client.post(
            "/audit/events",
            {"type": "report.exported", "ip": "2001:db8::1", "user_agent": "FMC650"},
            format="json",
        ).json()

        assert (own["ip"], own["user_agent"]) == ("198.51.100.7", "fleet-cli/1.0")
        assert (reported["ip"], reported["user_agent"]) == ("2001:db8::1", "FMC650")

    def test_an_unknown_type_is_stored_without_side_effects(self, client_for, tenant_a, device):
        response = client_for(tenant_a.manager).post(
            "/audit/events",
            {
                "type": "device.reflashed",
                "device_id": device.pk,
                "ts": "2025-01-01T12:00:00Z",
                "payload": {"firmware": "03.28"},
            },
            format="json",
        )

        assert response.status_code == 201
        body = response.json()
        assert (body["device_id"], body["device_name"]) == (device.pk, "Truck A")
        assert body["ts"] == "2025-01-01T12:00:00Z"
        assert body["payload"] == {"firmware": "03.28"}
        assert not DeviceSession.objects.exists()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "type"),
            ({"type": "Device Connected"}, "type"),
            ({"type": "device..connected"}, "type"),
            ({"type": "x" * 65}, "type"),
            ({"type": "device.connected"}, "device_id"),
            ({"type": "user.login"}, "user_id"),
            ({"type": "device.connected", "device_id": 999_999}, "device_id"),
            ({"type": "user.login", "user_id": 999_999}, "user_id"),
            ({"type": "a.b", "payload": [1, 2]}, "payload"),
            ({"type": "a.b", "payload": {"blob": "x" * 17_000}}, "payload"),
            ({"type": "a.b", "ip": "not-an-ip"}, "ip"),
            ({"type": "a.b", "ts": "yesterday"}, "ts"),
        ],
    )
    def test_a_malformed_event_is_a_400_naming_the_field(self, client_for, tenant_a, body, field):
        response = client_for(tenant_a.manager).post("/audit/events", body, format="json")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == [field]
        assert not AuditEvent.objects.exists()
        assert not DeviceSession.objects.exists()

    def test_a_user_of_another_tenant_cannot_be_named(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_a.manager).post(
            "/audit/events", {"type": "user.login", "user_id": tenant_b.admin.pk}, format="json"
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["user_id"]


class TestFilters:
    @pytest.fixture
    def trail(self, tenant_a, device):
        tenant_id = tenant_a.tenant.pk

        def at(hour: int) -> datetime:
            return datetime(2025, 1, 1, hour, tzinfo=UTC)

        return [
            services.record_event(
                "device.reflashed", tenant_id=tenant_id, device_id=device.pk, ts=at(1)
            ),
            services.record_event(
                "report.exported", tenant_id=tenant_id, user_id=tenant_a.admin.pk, ts=at(2)
            ),
            services.record_event(
                "device.renamed", tenant_id=tenant_id, ip="203.0.113.9", ts=at(3)
            ),
        ]

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", [2, 1, 0]),
            ("type=report.exported", [1]),
            ("type_prefix=device.", [2, 0]),
            ("device_id={device}", [0]),
            ("user_id={admin}", [1]),
            ("ip=203.0.113.9", [2]),
            ("from=2025-01-01T02:00:00Z", [2, 1]),
            ("from=2025-01-01T01:00:00Z&to=2025-01-01T03:00:00Z", [1, 0]),
            # An offset past PostgreSQL's 15:59: 01:30 UTC.
            ("from=2025-01-01T19:30:00%2B18:00", [2, 1]),
            ("ordering=ts", [0, 1, 2]),
        ],
    )
    def test_filters_narrow_the_trail(self, client_for, tenant_a, device, trail, query, expected):
        url = "/audit/events?" + query.format(device=device.pk, admin=tenant_a.admin.pk)

        response = client_for(tenant_a.manager).get(url)

        assert [event["id"] for event in response.json()] == [trail[i].pk for i in expected]

    def test_it_pages_with_headers(self, client_for, tenant_a, trail):
        response = client_for(tenant_a.manager).get("/audit/events?limit=2")

        assert len(response.json()) == 2
        assert response["X-Total-Count"] == "3"
        assert 'rel="next"' in response["Link"]

    def test_a_bad_filter_value_is_named(self, client_for, tenant_a):
        response = client_for(tenant_a.manager).get("/audit/events?ip=nope&from=later")

        assert response.status_code == 400
        assert set(response.json()["errors"]) == {"ip", "from"}

    def test_a_time_before_year_one_in_utc_is_named(self, client_for, tenant_a):
        response = client_for(tenant_a.manager).get("/audit/events?to=0001-01-01T00:00:00%2B18:00")

        assert response.status_code == 400
        assert set(response.json()["errors"]) == {"to"}
