"""Request rates: per user on the API, per address on /auth, never on device ingest."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from apps.devices import services as device_services
from apps.tenants.models import Role, UserRole
from conftest import PASSWORD
from quantumfleet.environment import cache_from_url, parse_throttle_rate

pytestmark = pytest.mark.django_db

DEVICE_TOKEN = "throttle-test-token-0123456789"


@pytest.fixture
def rates(settings):
    """Set the rates as the environment would, for this test only."""

    def set_rates(user: str | None = "3/minute", auth: str | None = "3/minute") -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"user": user, "auth": auth},
        }

    return set_rates


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    body = response.json()
    assert body["code"] == "throttled"
    assert body["detail"].startswith("Request was throttled.")
    assert set(body) == {"detail", "code"}


class TestPerUser:
    def test_a_user_past_the_rate_gets_a_429_with_retry_after(self, rates, client_for, tenant_a):
        rates(user="3/minute")
        client = client_for(tenant_a.viewer)

        statuses = [client.get("/devices").status_code for _ in range(3)]

        assert statuses == [200, 200, 200]
        assert_throttled(client.get("/devices"))

    def test_a_refusal_is_counted_for_the_tenant_and_audited_once_per_window(
        self, rates, client_for, tenant_a, settings
    ):
        from apps.audit.models import AuditEvent
        from apps.telemetry import limits

        # Counted by this process alone, for this test alone.
        settings.INGEST_LIMITS_REDIS_URL = ""
        limits.reset_limiter()
        rates(user="2/minute")
        client = client_for(tenant_a.viewer)
        for _ in range(2):
            client.get("/devices")

        for _ in range(3):
            assert_throttled(client.get("/devices"))

        events = AuditEvent.objects.filter(type="api.throttled")
        assert events.count() == 1
        event = events.get()
        assert (event.tenant_id, event.user_id) == (tenant_a.tenant.pk, tenant_a.viewer.pk)
        assert event.payload == {"rate": "2/minute", "path": "/devices"}
        refused = limits.limiter().refused_last_hour(tenant_a.tenant.pk)
        assert refused["api_user_rate"] == 3
        limits.reset_limiter()

    def test_the_rate_counts_every_route_and_tenant_of_the_user(
        self, rates, client_for, tenant_a, tenant_b
    ):
        rates(user="3/minute")
        UserRole.objects.create(user=tenant_a.admin, tenant=tenant_b.tenant, role=Role.VIEWER)
        client_for(tenant_a.admin, tenant_a.tenant).get("/devices")
        client_for(tenant_a.admin, tenant_b.tenant).get("/connectors")
        client_for(tenant_a.admin).get("/auth/me")

        assert_throttled(client_for(tenant_a.admin, tenant_a.tenant).get("/rules"))

    def test_other_users_keep_their_own_allowance(self, rates, client_for, tenant_a):
        rates(user="2/minute")
        for _ in range(3):
            client_for(tenant_a.viewer).get("/devices")

        assert client_for(tenant_a.manager).get("/devices").status_code == 200

    def test_off_means_no_limit(self, rates, client_for, tenant_a):
        rates(user=None)
        client = client_for(tenant_a.viewer)

        assert {client.get("/devices").status_code for _ in range(10)} == {200}


class TestDevicesAreNotThrottled:
    def test_http_ingest_is_not_counted(self, rates, tenant_a):
        rates(user="1/minute", auth="1/minute")
        device_services.create_device(tenant=tenant_a.tenant, name="Van", token=DEVICE_TOKEN)
        client = APIClient()

        statuses = [
            client.post(
                "/ingest/http",
                json.dumps(
                    {"token": DEVICE_TOKEN, "data": {"n": n}, "ts": f"2025-01-01T00:00:{n:02d}Z"}
                ),
                content_type="application/json",
            ).status_code
            for n in range(10)
        ]

        assert statuses == [201] * 10

    def test_teltonika_records_are_not_counted(self, rates, tenant_a):
        rates(user="1/minute", auth="1/minute")
        device_services.create_device(tenant=tenant_a.tenant, name="Van", token=DEVICE_TOKEN)
        client = APIClient()

        statuses = [
            client.post(
                "/ingest/teltonika/ingest",
                {
                    "token": DEVICE_TOKEN,
                    "timestamp": 1_560_161_086_000 + n * 1000,
                    "gps": {"lat": 54.6, "lon": 25.2},
                },
                format="json",
            ).status_code
            for n in range(5)
        ]

        assert statuses == [201] * 5


class TestAuthRoutes:
    def test_an_address_past_the_auth_rate_gets_a_429(self, rates, tenant_a):
        rates(auth="3/minute")
        client = APIClient()
        body = {"username": tenant_a.viewer.email, "password": PASSWORD}

        statuses = [
            client.post("/auth/login", body, REMOTE_ADDR="203.0.113.5").status_code
            for _ in range(3)
        ]

        assert statuses == [200, 200, 200]
        assert_throttled(client.post("/auth/login", body, REMOTE_ADDR="203.0.113.5"))
        assert_throttled(client.post("/auth/register", {}, REMOTE_ADDR="203.0.113.5"))
        assert client.post("/auth/login", body, REMOTE_ADDR="203.0.113.6").status_code == 200


class TestSettings:
    @pytest.mark.parametrize(
        ("raw", "parsed"),
        [("600/minute", "600/minute"), (" 20/Hour ", "20/hour"), ("off", None), ("", None)],
    )
    def test_a_rate_is_read_or_switched_off(self, raw, parsed):
        assert parse_throttle_rate("API_USER_THROTTLE_RATE", raw) == parsed

    @pytest.mark.parametrize("raw", ["fast", "0/minute", "10/fortnight", "10", "-1/second"])
    def test_a_bad_rate_is_refused_naming_the_variable(self, raw):
        with pytest.raises(ImproperlyConfigured, match="API_USER_THROTTLE_RATE"):
            parse_throttle_rate("API_USER_THROTTLE_RATE", raw)

    def test_a_redis_cache_url_gives_the_redis_backend(self):
        assert cache_from_url("redis://cache:6379/1") == {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://cache:6379/1",
            "KEY_PREFIX": "quantumfleet",
        }
        assert cache_from_url("")["BACKEND"].endswith("LocMemCache")

    def test_an_unknown_cache_scheme_is_refused(self):
        with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
            cache_from_url("memcached://cache:11211")
