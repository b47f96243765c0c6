"""Brute-force protection of POST /auth/login: counted failures, 429, audit, real Redis."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
import redis
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.tenants.models import Role, Tenant, UserRole
from conftest import PASSWORD

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.9"
NEIGHBOUR = "203.0.113.10"
REDIS_URL = os.environ.get("SECURITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")


def login(email: str, password: str, address: str = ATTACKER):
    return APIClient().post(
        "/auth/login",
        f"username={email}&password={password}",
        content_type="application/x-www-form-urlencoded",
        REMOTE_ADDR=address,
    )


def fail(email: str, times: int, address: str = ATTACKER) -> list[int]:
    return [login(email, "wrong-password", address).status_code for _ in range(times)]


@pytest.fixture
def alice(db: None) -> User:
    user = User.objects.create_user("alice@example.com", PASSWORD)
    tenant = Tenant.objects.create(name="Alice's fleet", slug="alice")
    UserRole.objects.create(user=user, tenant=tenant, role=Role.ADMIN)
    return user


@pytest.fixture
def committing(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture(autouse=True)
def small_limits(settings) -> None:
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 900
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 12
    settings.LOGIN_UNKNOWN_ACCOUNT_EVENTS = 200


def assert_throttled(response, window: int = 900) -> None:
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 0 < wait <= window + 1
    body = response.json()
    assert body["code"] == "login_throttled"
    assert body["detail"].startswith("Too many failed logins from this address.")
    assert f"Try again in {wait} second" in body["detail"]


class TestPerAccount:
    def test_it_refuses_the_account_after_five_failures_even_with_the_right_password(self, alice):
        assert fail(alice.email, 5) == [401] * 5

        assert_throttled(login(alice.email, "wrong-password"))
        assert_throttled(login(alice.email, PASSWORD))

    def test_it_answers_an_unknown_account_exactly_as_a_known_one(self, alice):
        fail(alice.email, 5)
        fail("nobody@example.com", 5)

        known = login(alice.email, "wrong-password")
        unknown = login("nobody@example.com", "wrong-password")

        assert_throttled(known)
        assert_throttled(unknown)
        assert known.json()["code"] == unknown.json()["code"]
        assert known.json()["detail"].split(" Try")[0] == unknown.json()["detail"].split(" Try")[0]

    def test_the_account_still_logs_in_from_another_address(self, alice):
        fail(alice.email, 5)

        assert login(alice.email, PASSWORD, address=NEIGHBOUR).status_code == 200

    def test_a_successful_login_clears_the_accounts_failures(self, alice):
        assert fail(alice.email, 4) == [401] * 4
        assert login(alice.email, PASSWORD).status_code == 200

        assert fail(alice.email, 4) == [401] * 4
        assert login(alice.email, PASSWORD).status_code == 200

    def test_the_block_ends_with_its_window(self, alice, settings):
        settings.LOGIN_FAILURE_WINDOW_SECONDS = 1
        fail(alice.email, 5)
        assert_throttled(login(alice.email, PASSWORD), window=1)

        time.sleep(1.2)

        assert login(alice.email, PASSWORD).status_code == 200

    def test_a_malformed_login_is_a_400_and_not_counted(self, alice):
        client = APIClient()
        for _ in range(8):
            response = client.post("/auth/login", {"password": "x"}, REMOTE_ADDR=ATTACKER)
            assert response.status_code == 400
            assert "username" in response.json()["errors"]

        assert login(alice.email, PASSWORD).status_code == 200


class TestPerAddress:
    def test_it_refuses_every_login_from_an_address_past_its_limit(self, alice):
        for index in range(12):
            assert login(f"guess{index}@example.com", "x").status_code == 401

        assert_throttled(login(alice.email, PASSWORD))
        assert login(alice.email, PASSWORD, address=NEIGHBOUR).status_code == 200

    def test_a_successful_login_does_not_clear_the_address_count(self, alice):
        for index in range(11):
            login(f"guess{index}@example.com", "x")
        assert login(alice.email, PASSWORD).status_code == 200

        assert login("guess-last@example.com", "x").status_code == 401
        assert_throttled(login(alice.email, PASSWORD))

    def test_the_address_comes_from_trusted_proxies_only(self, alice, settings):
        # Without a trusted proxy, a forged X-Forwarded-For changes nothing.
        for index in range(12):
            APIClient().post(
                "/auth/login",
                {"username": f"guess{index}@example.com", "password": "x"},
                REMOTE_ADDR=ATTACKER,
                HTTP_X_FORWARDED_FOR=f"198.51.100.{index}",
            )

        assert_throttled(login(alice.email, PASSWORD))


class TestAudit:
    def test_reaching_a_limit_is_recorded_once_and_blocked_attempts_add_no_rows(
        self, alice, committing
    ):
        with committing():
            fail(alice.email, 5)
        with committing():
            for _ in range(20):
                login(alice.email, "wrong-password")

        types = list(AuditEvent.objects.order_by("id").values_list("type", flat=True))
        assert types == ["user.login_failed"] * 5 + ["user.login_throttled"]
        throttled = AuditEvent.objects.get(type="user.login_throttled")
        tenant_id = UserRole.objects.get(user=alice).tenant_id
        assert (throttled.tenant_id, throttled.user_id, throttled.ip) == (
            tenant_id,
            alice.pk,
            ATTACKER,
        )
        assert throttled.payload == {
            "limit": "account",
            "failures": 5,
            "window_seconds": 900,
            "email": alice.email,
        }

    def test_an_address_reaching_its_limit_is_recorded_for_operators(self, db, committing):
        with committing():
            for index in range(12):
                login(f"guess{index}@example.com", "x")

        event = AuditEvent.objects.get(type="user.login_throttled")
        assert (event.tenant_id, event.user_id, event.ip) == (None, None, ATTACKER)
        assert event.payload == {"limit": "address", "failures": 12, "window_seconds": 900}

    def test_refused_logins_of_unknown_accounts_are_written_up_to_a_budget(
        self, db, settings, committing, caplog
    ):
        settings.LOGIN_UNKNOWN_ACCOUNT_EVENTS = 3
        with committing():
            # From many addresses, as a spread-out guesser would: no per-address block.
            for index in range(10):
                login(f"guess{index}@example.com", "x", address=f"198.51.100.{index}")

        assert AuditEvent.objects.filter(tenant=None).count() == 3
        assert "audit.unknown_login_events_capped" in caplog.messages

    def test_known_accounts_are_audited_past_the_unknown_budget(self, alice, settings, committing):
        settings.LOGIN_UNKNOWN_ACCOUNT_EVENTS = 0
        with committing():
            login("nobody@example.com", "x")
            login(alice.email, "wrong-password")

        assert list(AuditEvent.objects.values_list("type", "user_id")) == [
            ("user.login_failed", alice.pk)
        ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_cache(settings):
    """The production cache backend on a real Redis, under a prefix of this test's own."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}: start redis-server (.ci/run does)")
    prefix = f"qf-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    yield client, prefix
    # Only this test's keys: the Redis is shared.
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


class TestOnRedis:
    def test_the_counters_live_in_redis_and_expire_with_the_window(self, alice, redis_cache):
        client, prefix = redis_cache

        assert fail(alice.email, 5) == [401] * 5
        assert_throttled(login(alice.email, PASSWORD))

        counters = [key.decode() for key in client.scan_iter(match=f"{prefix}:*login-failures*")]
        assert any(":account:" in key and key.endswith(":count") for key in counters)
        assert any(":address:" in key for key in counters)
        # The email is not in the cache, only its digest.
        assert not any(alice.email in key for key in counters)
        ttls = [client.ttl(key) for key in counters]
        assert all(0 < ttl <= 900 for ttl in ttls)

    def test_two_processes_share_the_count(self, alice, redis_cache):
        # Another web process is another cache connection to the same Redis.
        fail(alice.email, 3)
        cache.close()
        fail(alice.email, 2)

        assert_throttled(login(alice.email, PASSWORD))

    def test_a_cache_that_does_not_answer_lets_logins_through(self, alice, settings, caplog):
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            }
        }

        assert fail(alice.email, 6) == [401] * 6
        assert login(alice.email, PASSWORD).status_code == 200
        assert "user.login_limit_unavailable" in caplog.messages
