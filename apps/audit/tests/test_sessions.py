"""Sessions kept by events, the Teltonika daemon's sessions, and the timeout job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import UserSession
from apps.audit.tasks import close_stale_sessions
from apps.devices import services as device_services
from apps.devices.models import DeviceSession
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def post_event(client_for, tenant_a):
    client = client_for(tenant_a.manager)

    def post(event_type: str, **fields):
        response = client.post("/audit/events", {"type": event_type, **fields}, format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    return post


def age(model, pk: int, minutes: int) -> None:
    """Pretend the session was last seen ``minutes`` ago."""
    model.objects.filter(pk=pk).update(last_seen=timezone.now() - timedelta(minutes=minutes))


class TestDeviceSessions:
    def test_connected_opens_a_session_and_closes_older_open_ones(self, post_event, device):
        post_event("device.connected", device_id=device.pk, payload={"transport": "tcp"})
        post_event("device.connected", device_id=device.pk, ip="192.0.2.4")

        first, second = DeviceSession.objects.order_by("id")
        assert (first.transport, first.close_reason) == ("tcp", "replaced")
        assert first.ended_at is not None
        assert (second.transport, second.peer, second.ended_at) == ("api", "192.0.2.4", None)

    @pytest.mark.parametrize("event_type", ["device.keepalive", "device.message"])
    def test_keepalive_and_message_refresh_last_seen(self, post_event, device, event_type):
        post_event("device.connected", device_id=device.pk)
        session = DeviceSession.objects.get()
        age(DeviceSession, session.pk, 10)

        post_event(event_type, device_id=device.pk)

        refreshed = DeviceSession.objects.get()
        assert refreshed.pk == session.pk
        assert timezone.now() - refreshed.last_seen < timedelta(minutes=1)
        assert refreshed.ended_at is None

    def test_disconnected_closes_it_and_a_later_keepalive_reopens_one(self, post_event, device):
        post_event("device.connected", device_id=device.pk)
        post_event("device.disconnected", device_id=device.pk, payload={"reason": "ignition off"})
        closed = DeviceSession.objects.get()

        post_event("device.keepalive", device_id=device.pk)

        assert (closed.close_reason, closed.ended_at is not None) == ("ignition off", True)
        reopened = DeviceSession.objects.exclude(pk=closed.pk).get()
        assert reopened.ended_at is None

    def test_a_daemon_session_is_listed_with_its_duration(self, client_for, tenant_a, device):
        session_id = device_services.open_device_session(
            device.pk, tenant_a.tenant.pk, "tcp", "203.0.113.5:40000"
        )
        started = timezone.now() - timedelta(minutes=5)
        DeviceSession.objects.filter(pk=session_id).update(started_at=started)
        device_services.close_device_session(session_id, 12, 3400, "closed")

        body = client_for(tenant_a.viewer).get(f"/audit/device-sessions?device_id={device.pk}")

        (session,) = body.json()
        assert (session["transport"], session["records"], session["is_open"]) == ("tcp", 12, False)
        assert session["duration_seconds"] == pytest.approx(300, abs=5)


class TestUserSessions:
    def test_login_keepalive_and_logout(self, post_event, tenant_a):
        user_id = tenant_a.viewer.pk
        post_event("user.login", user_id=user_id, user_agent="Firefox")
        session = UserSession.objects.get()
        age(UserSession, session.pk, 10)

        post_event("user.keepalive", user_id=user_id)
        seen = UserSession.objects.get()
        post_event("user.logout", user_id=user_id)
        closed = UserSession.objects.get()

        assert (session.user_id, session.tenant_id, session.user_agent) == (
            user_id,
            tenant_a.tenant.pk,
            "Firefox",
        )
        assert timezone.now() - seen.last_seen < timedelta(minutes=1)
        assert closed.close_reason == "logout"
        assert closed.ended_at is not None

    def test_a_second_login_replaces_the_open_session(self, post_event, tenant_a):
        post_event("user.login", user_id=tenant_a.viewer.pk)
        post_event("user.login", user_id=tenant_a.viewer.pk)

        older, newer = UserSession.objects.order_by("id")
        assert older.close_reason == "replaced"
        assert newer.ended_at is None

    def test_a_keepalive_after_logout_reopens_a_session(self, post_event, tenant_a):
        post_event("user.login", user_id=tenant_a.viewer.pk)
        post_event("user.logout", user_id=tenant_a.viewer.pk)

        post_event("user.keepalive", user_id=tenant_a.viewer.pk)

        assert UserSession.objects.filter(ended_at=None).count() == 1
        assert UserSession.objects.count() == 2

    @pytest.mark.parametrize("role", list(Role))
    def test_user_sessions_are_for_managers_and_admins(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).get("/audit/user-sessions")

        assert response.status_code == (403 if role == Role.VIEWER else 200)

    @pytest.mark.parametrize("role", list(Role))
    def test_device_sessions_are_for_every_member(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).get("/audit/device-sessions?is_open=true")

        assert response.status_code == 200


class TestTimeouts:
    def test_stale_sessions_close_at_their_last_sign_of_life(
        self, post_event, tenant_a, device, settings
    ):
        settings.DEVICE_SESSION_TIMEOUT = 15 * 60
        settings.USER_SESSION_TIMEOUT = 60 * 60
        other, _ = device_services.create_device(tenant=tenant_a.tenant, name="Truck B")
        post_event("device.connected", device_id=device.pk)
        post_event("device.connected", device_id=other.pk)
        post_event("user.login", user_id=tenant_a.viewer.pk)
        post_event("user.login", user_id=tenant_a.admin.pk)
        stale_device = DeviceSession.objects.get(device=device)
        stale_user = UserSession.objects.get(user_id=tenant_a.viewer.pk)
        age(DeviceSession, stale_device.pk, 16)
        age(DeviceSession, DeviceSession.objects.get(device=other).pk, 14)
        age(UserSession, stale_user.pk, 61)

        summary = close_stale_sessions()

        stale_device.refresh_from_db()
        stale_user.refresh_from_db()
        assert summary == "1 device and 1 user session(s) timed out"
        assert (stale_device.close_reason, stale_device.ended_at) == (
            "timeout",
            stale_device.last_seen,
        )
        assert (stale_user.close_reason, stale_user.ended_at) == ("timeout", stale_user.last_seen)
        assert DeviceSession.objects.filter(device=other, ended_at=None).exists()
        assert UserSession.objects.filter(user_id=tenant_a.admin.pk, ended_at=None).exists()

    def test_a_device_seen_after_its_timeout_gets_a_new_session(self, post_event, device):
        post_event("device.connected", device_id=device.pk)
        age(DeviceSession, DeviceSession.objects.get().pk, 60 * 24)
        close_stale_sessions()

        post_event("device.message", device_id=device.pk)

        assert DeviceSession.objects.filter(ended_at=None).count() == 1
        assert DeviceSession.objects.filter(close_reason="timeout").count() == 1

    def test_the_job_is_on_the_beat_schedule(self, settings):
        tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

        assert "audit.close_stale_sessions" in tasks
