"""Ingest rate limits and tenant quotas: refused with 429 and Retry-After, nothing stored,
counted, audited once per window, visible to the tenant's admins."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.devices import services as device_services
from apps.devices.models import Device
from apps.telemetry import limits
from apps.telemetry.models import DeviceState, Telemetry
from apps.telemetry.partitions import run_maintenance
from apps.telemetry.services import Point, ingest_points
from apps.tenants.models import Role

from .conftest import DEVICE_TOKEN, LIMITS_REDIS_URL

pytestmark = pytest.mark.django_db

# In the middle of a window: a test never straddles two.
FROZEN_NOW = 1_800_000_030.0
OTHER_TOKEN = "device-alpha-second-0123456789"


def post_points(client, token: str, count: int, start_minute: int = 0):
    base = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    points = [
        {"ts": (base + timedelta(minutes=start_minute + n)).isoformat(), "data": {"n": n}}
        for n in range(count)
    ]
    return client.post(
        "/ingest/http",
        json.dumps({"token": token, "points": points}),
        content_type="application/json",
    )


@pytest.fixture
def frozen(limits_on):
    limiter = limits.limiter()
    limiter.clock = lambda: FROZEN_NOW
    return limiter


class TestDeviceRate:
    def test_points_over_the_device_limit_get_429_and_are_not_stored(
        self, anonymous, device, tenant_a, frozen
    ):
        tenant_a.tenant.device_points_per_minute = 5
        tenant_a.tenant.save()

        assert post_points(anonymous, DEVICE_TOKEN, 3).status_code == 201
        refused = post_points(anonymous, DEVICE_TOKEN, 3, start_minute=10)

        assert refused.status_code == 429
        assert refused["Retry-After"] == "30"
        assert refused.json()["code"] == "device_rate"
        assert "5 points per minute" in refused.json()["detail"]
        assert Telemetry.objects.filter(device=device).count() == 3

    def test_the_next_window_admits_again(self, anonymous, device, tenant_a, frozen):
        tenant_a.tenant.device_points_per_minute = 2
        tenant_a.tenant.save()
        assert post_points(anonymous, DEVICE_TOKEN, 3).status_code == 429

        frozen.clock = lambda: FROZEN_NOW + 60

        assert post_points(anonymous, DEVICE_TOKEN, 2, start_minute=5).status_code == 201

    def test_a_trip_is_audited_once_per_window(self, anonymous, device, tenant_a, frozen):
        tenant_a.tenant.device_points_per_minute = 1
        tenant_a.tenant.save()

        for attempt in range(4):
            post_points(anonymous, DEVICE_TOKEN, 1, start_minute=attempt)

        events = AuditEvent.objects.filter(type="ingest.rate_limited")
        assert events.count() == 1
        event = events.get()
        assert (event.tenant_id, event.device_id) == (tenant_a.tenant.pk, device.pk)
        assert event.payload == {"reason": "device_rate", "limit_per_minute": 1}

    def test_a_device_of_another_tenant_is_not_held_back(
        self, anonymous, device, foreign_device, tenant_a, frozen
    ):
        from .conftest import FOREIGN_DEVICE_TOKEN

        tenant_a.tenant.device_points_per_minute = 1
        tenant_a.tenant.save()
        post_points(anonymous, DEVICE_TOKEN, 2)

        assert post_points(anonymous, FOREIGN_DEVICE_TOKEN, 2).status_code == 201


class TestTenantRate:
    def test_the_tenants_devices_share_its_limit(self, anonymous, device, tenant_a, frozen):
        device_services.create_device(tenant=tenant_a.tenant, name="Second", token=OTHER_TOKEN)
        tenant_a.tenant.tenant_points_per_minute = 4
        tenant_a.tenant.save()

        assert post_points(anonymous, DEVICE_TOKEN, 3).status_code == 201
        refused = post_points(anonymous, OTHER_TOKEN, 2)

        assert refused.status_code == 429
        assert refused.json()["code"] == "tenant_rate"
        assert Telemetry.objects.filter(tenant=tenant_a.tenant).count() == 3

    def test_no_limit_when_the_platform_turns_them_off(self, anonymous, device, tenant_a, settings):
        settings.INGEST_LIMITS_ENABLED = False
        tenant_a.tenant.device_points_per_minute = 1
        tenant_a.tenant.save()

        assert post_points(anonymous, DEVICE_TOKEN, 5).status_code == 201


class TestQuotas:
    def test_a_full_stored_points_quota_refuses_new_points(
        self, anonymous, device, tenant_a, frozen
    ):
        tenant_a.tenant.max_stored_points = 3
        tenant_a.tenant.save()
        assert post_points(anonymous, DEVICE_TOKEN, 3).status_code == 201
        # The stored total is read again after QUOTA_REFRESH_SECONDS; start afresh instead.
        frozen.forget()

        refused = post_points(anonymous, DEVICE_TOKEN, 1, start_minute=30)

        assert refused.status_code == 429
        assert refused.json()["code"] == "stored_points_quota"
        assert refused["Retry-After"] == str(limits.QUOTA_RETRY_AFTER_SECONDS)
        assert Telemetry.objects.filter(device=device).count() == 3

    @pytest.mark.parametrize("retention_of", ["tenant", "platform"])
    def test_retention_gives_back_quota(self, device, tenant_a, settings, retention_of):
        now = timezone.now()
        old = [
            Point(device.tenant_id, device.pk, now - timedelta(days=40 + n), {}) for n in range(3)
        ]
        recent = [Point(device.tenant_id, device.pk, now - timedelta(days=1), {})]
        ingest_points(old + recent)
        assert DeviceState.objects.get(device=device).point_count == 4
        # A tenant's own retention rewrites partitions; the platform's drops them whole.
        if retention_of == "tenant":
            tenant_a.tenant.telemetry_retention_days = 30
            tenant_a.tenant.save()
        else:
            settings.TELEMETRY_RETENTION_DAYS = 30

        run_maintenance(now)

        assert Telemetry.objects.filter(device=device).count() == 1
        assert DeviceState.objects.get(device=device).point_count == 1
        assert limits.stored_points_by_tenant([tenant_a.tenant.pk]) == {tenant_a.tenant.pk: 1}

    def test_the_device_quota_refuses_one_device_more(self, client_for, tenant_a, device):
        tenant_a.tenant.max_devices = 1
        tenant_a.tenant.save()
        admin = client_for(tenant_a.member(Role.ADMIN))

        response = admin.post("/devices", {"name": "One too many"}, format="json")

        assert response.status_code == 403
        assert response.json()["code"] == "device_quota_exceeded"
        assert Device.objects.filter(tenant=tenant_a.tenant).count() == 1

    def test_the_platform_default_quota_applies_without_an_override(
        self, client_for, tenant_a, device, settings
    ):
        settings.TENANT_MAX_DEVICES = 1
        admin = client_for(tenant_a.member(Role.ADMIN))

        assert admin.post("/devices", {"name": "Over"}, format="json").status_code == 403
        tenant_a.tenant.max_devices = 0
        tenant_a.tenant.save()
        assert admin.post("/devices", {"name": "Unlimited"}, format="json").status_code == 201


class TestSharedCounters:
    def test_processes_share_one_window_through_redis(self, device, tenant_a, settings, limits_on):
        tenant_a.tenant.device_points_per_minute = 5
        tenant_a.tenant.save()
        prefix = settings.INGEST_LIMITS_KEY_PREFIX
        # Two limiters stand for two web workers or daemons.
        first = limits.IngestLimiter(limits.RedisCounters(LIMITS_REDIS_URL), prefix)
        second = limits.IngestLimiter(limits.RedisCounters(LIMITS_REDIS_URL), prefix)
        for limiter in (first, second):
            limiter.clock = lambda: FROZEN_NOW
        demand = limits.Demand(tenant_a.tenant.pk, device.pk, (3,))

        assert first.admit([demand]) == {}
        refusals = second.admit([demand])

        assert refusals[device.pk].reason is limits.LimitReason.DEVICE_RATE
        assert second.refused_last_hour(tenant_a.tenant.pk)["device_rate"] == 3

    def test_an_unreachable_redis_lets_points_through_and_logs(
        self, device, tenant_a, caplog, settings
    ):
        tenant_a.tenant.device_points_per_minute = 1
        tenant_a.tenant.save()
        # Nothing listens on port 9: every call fails at once.
        limiter = limits.IngestLimiter(limits.RedisCounters("redis://127.0.0.1:9/0"), "x")

        refusals = limiter.admit([limits.Demand(tenant_a.tenant.pk, device.pk, (10,))])

        assert refusals == {}
        assert "ingest.limits_not_enforced" in caplog.text
        assert limiter.refused_last_hour(tenant_a.tenant.pk) == {}

    def test_a_hung_redis_costs_one_timeout_then_is_left_alone(self, device, tenant_a):
        tenant_a.tenant.device_points_per_minute = 1
        tenant_a.tenant.save()
        accepted: list[socket.socket] = []
        # A server that takes connections and never answers: Redis frozen, not down.
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def accept_forever() -> None:
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(listener.accept()[0])

        threading.Thread(target=accept_forever, daemon=True).start()
        limiter = limits.IngestLimiter(limits.RedisCounters(f"redis://127.0.0.1:{port}/0"), "x")
        demand = [limits.Demand(tenant_a.tenant.pk, device.pk, (10,))]
        try:
            started = time.perf_counter()
            assert limiter.admit(demand) == {}
            first = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(20):
                assert limiter.admit(demand) == {}
            following = time.perf_counter() - started
        finally:
            listener.close()
            for connection in accepted:
                connection.close()

        assert first < 1.0
        # Twenty batches in the retry window: none of them waits for Redis.
        assert following < 0.2
        assert len(accepted) == 1


class TestLimitsEndpoint:
    def test_a_tenant_admin_sees_limits_use_and_refusals(
        self, anonymous, client_for, device, tenant_a, frozen
    ):
        tenant_a.tenant.device_points_per_minute = 2
        tenant_a.tenant.save()
        post_points(anonymous, DEVICE_TOKEN, 2)
        post_points(anonymous, DEVICE_TOKEN, 3, start_minute=10)

        response = client_for(tenant_a.member(Role.ADMIN)).get(
            f"/tenants/{tenant_a.tenant.pk}/limits"
        )

        assert response.status_code == 200
        body = response.json()
        assert body["enforced"] is True
        assert body["limits"]["device_points_per_minute"] == 2
        assert body["usage"]["devices"] == 1
        assert body["usage"]["stored_points"] == 2
        assert body["usage"]["tenant_points_this_minute"] is not None
        assert body["refused_last_hour"] == {
            "device_rate": 3,
            "tenant_rate": 0,
            "stored_points_quota": 0,
            "api_user_rate": 0,
        }

    @pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER])
    def test_only_admins_read_it(self, client_for, tenant_a, role, limits_on):
        response = client_for(tenant_a.member(role)).get(f"/tenants/{tenant_a.tenant.pk}/limits")

        assert response.status_code == 403

    def test_another_tenants_admin_cannot(self, client_for, tenant_a, tenant_b, limits_on):
        response = client_for(tenant_b.member(Role.ADMIN)).get(
            f"/tenants/{tenant_a.tenant.pk}/limits"
        )

        assert response.status_code == 403
        assert str(tenant_a.tenant.name) not in response.content.decode()


class TestSharingOut:
    def test_whole_submissions_are_admitted_in_order_and_a_tenant_window_is_shared(
        self, tenant_a, settings
    ):
        tenant_a.tenant.tenant_points_per_minute = 5
        tenant_a.tenant.device_points_per_minute = 0
        tenant_a.tenant.save()
        limiter = limits.IngestLimiter(limits.LocalCounters(), "local")
        tenant = tenant_a.tenant.pk

        refusals = limiter.admit(
            [limits.Demand(tenant, 1, (2, 2)), limits.Demand(tenant, 2, (2, 1))]
        )

        # Device 1 takes 4 of the 5; device 2's first submission (2) no longer fits.
        assert 1 not in refusals
        assert refusals[2].admitted == 0
        assert refusals[2].reason is limits.LimitReason.TENANT_RATE
