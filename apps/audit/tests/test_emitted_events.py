"""The platform records its own events once the action they record is committed."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent, UserSession
from apps.tenants.models import Role, UserRole
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def committing(django_capture_on_commit_callbacks):
    """``with committing():`` runs, at its end, what the commits inside would have run.

    The test's own transaction never commits, so on-commit work needs this to happen.
    """
    return lambda: django_capture_on_commit_callbacks(execute=True)


def login(anonymous, email: str, password: str = PASSWORD):
    return anonymous.post(
        "/auth/login",
        f"username={email}&password={password}",
        content_type="application/x-www-form-urlencoded",
        HTTP_USER_AGENT="curl/8",
        REMOTE_ADDR="198.51.100.20",
    )


class TestUsers:
    def test_a_login_is_recorded_in_each_of_the_users_tenants_and_opens_sessions(
        self, anonymous, tenant_a, tenant_b, committing
    ):
        UserRole.objects.create(user=tenant_a.viewer, tenant=tenant_b.tenant, role=Role.VIEWER)

        with committing():
            response = login(anonymous, tenant_a.viewer.email)

        assert response.status_code == 200
        events = AuditEvent.objects.filter(type="user.login")
        assert sorted(events.values_list("tenant_id", flat=True)) == sorted(
            [tenant_a.tenant.pk, tenant_b.tenant.pk]
        )
        assert {(e.user_id, e.ip, e.user_agent) for e in events} == {
            (tenant_a.viewer.pk, "198.51.100.20", "curl/8")
        }
        assert UserSession.objects.filter(user_id=tenant_a.viewer.pk, ended_at=None).count() == 2

    def test_a_refused_login_is_recorded_without_a_session_or_the_password(
        self, anonymous, tenant_a, committing
    ):
        with committing():
            response = login(anonymous, tenant_a.viewer.email, "wrong-password")

        event = AuditEvent.objects.get()
        assert response.status_code == 401
        assert (event.type, event.tenant_id, event.user_id) == (
            "user.login_failed",
            tenant_a.tenant.pk,
            tenant_a.viewer.pk,
        )
        assert event.payload == {"email": tenant_a.viewer.email}
        assert "wrong-password" not in str(AuditEvent.objects.values().get())
        assert not UserSession.objects.exists()

    def test_a_login_as_nobody_is_kept_for_operators_only(self, anonymous, db, committing):
        with committing():
            login(anonymous, "Nobody@Example.com", "guess")

        event = AuditEvent.objects.get()
        assert (event.type, event.tenant_id, event.user_id) == ("user.login_failed", None, None)
        assert event.payload == {"email": "nobody@example.com"}

    def test_a_logout_is_recorded_and_closes_the_session(self, anonymous, tenant_a, committing):
        with committing():
            tokens = login(anonymous, tenant_a.manager.email).json()
            response = anonymous.post(
                "/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json"
            )

        assert response.status_code == 204
        assert AuditEvent.objects.filter(type="user.logout", user_id=tenant_a.manager.pk).exists()
        session = UserSession.objects.get(user_id=tenant_a.manager.pk)
        assert session.close_reason == "logout"


class TestRoles:
    def test_granting_and_revoking_a_role_is_recorded_with_who_did_it(
        self, client_for, tenant_a, outsider, committing
    ):
        client = client_for(tenant_a.admin)
        url = f"/tenants/{tenant_a.tenant.pk}/users/{outsider.pk}/roles"

        with committing():
            client.post(f"{url}/viewer")
            client.post(f"{url}/manager")
            client.delete(f"{url}/manager")

        events = list(AuditEvent.objects.order_by("id").values("type", "user_id", "payload"))
        assert events == [
            {
                "type": "role.granted",
                "user_id": tenant_a.admin.pk,
                "payload": {"target_user_id": outsider.pk, "role": "viewer", "previous_role": None},
            },
            {
                "type": "role.granted",
                "user_id": tenant_a.admin.pk,
                "payload": {
                    "target_user_id": outsider.pk,
                    "role": "manager",
                    "previous_role": "viewer",
                },
            },
            {
                "type": "role.revoked",
                "user_id": tenant_a.admin.pk,
                "payload": {"target_user_id": outsider.pk, "role": "manager"},
            },
        ]

    def test_a_refused_change_records_nothing(self, client_for, tenant_a, committing):
        url = f"/tenants/{tenant_a.tenant.pk}/users/{tenant_a.admin.pk}/roles/admin"

        with committing():
            response = client_for(tenant_a.admin).delete(url)

        assert response.status_code == 409
        assert not AuditEvent.objects.exists()


class TestDevices:
    def test_who_changed_a_device_and_when_survives_its_deletion(
        self, client_for, tenant_a, committing
    ):
        client = client_for(tenant_a.manager)
        with committing():
            device_id = client.post("/devices", {"name": "Truck 9"}, format="json").json()["id"]
            client.patch(f"/devices/{device_id}", {"name": "Truck 9b", "model": ""}, format="json")
            client.post(f"/devices/{device_id}/rotate-token")
            client.delete(f"/devices/{device_id}")

        trail = client.get(f"/audit/events?device_id={device_id}&ordering=ts").json()

        assert [event["type"] for event in trail] == [
            "device.created",
            "device.updated",
            "device.token_rotated",
            "device.deleted",
        ]
        assert {event["user_email"] for event in trail} == {tenant_a.manager.email}
        assert {event["device_name"] for event in trail} == {None}
        assert trail[1]["payload"]["fields"] == ["name"]
        assert trail[3]["payload"]["name"] == "Truck 9b"
        assert all("token" not in str(event["payload"]) for event in trail)

    def test_a_refused_change_records_nothing(self, client_for, tenant_a, committing):
        with committing():
            response = client_for(tenant_a.manager).post(
                "/devices", {"name": "FM", "protocol": "teltonika"}, format="json"
            )

        assert response.status_code == 400
        assert not AuditEvent.objects.exists()
