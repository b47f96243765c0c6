from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import User
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client: APIClient, username: str, password: str, *, as_json: bool = False):
    body = {"username": username, "password": password}
    if as_json:
        return client.post("/auth/login", body, format="json")
    return client.post("/auth/login", body)  # multipart form, like an HTML form


def login_form_encoded(client: APIClient, username: str, password: str):
    return client.post(
        "/auth/login",
        f"username={username}&password={password}",
        content_type="application/x-www-form-urlencoded",
    )


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice@example.com", PASSWORD, full_name="Alice")


class TestLogin:
    def test_it_accepts_the_seeds_form_encoded_password_flow(self, anonymous, alice):
        response = login_form_encoded(anonymous, "alice@example.com", PASSWORD)

        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 60 * 60
        assert body["refresh_token"]
        me = anonymous.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
        assert me.status_code == 200
        assert me.json()["email"] == "alice@example.com"

    def test_it_accepts_json_and_the_email_alias(self, anonymous, alice):
        by_username = login(anonymous, "alice@example.com", PASSWORD, as_json=True)
        by_email = anonymous.post(
            "/auth/login", {"email": "alice@example.com", "password": PASSWORD}, format="json"
        )

        assert by_username.status_code == 200
        assert by_email.status_code == 200

    def test_it_ignores_the_case_of_the_email(self, anonymous, alice):
        response = login(anonymous, "  ALICE@Example.COM ", PASSWORD)

        assert response.status_code == 200

    @pytest.mark.parametrize(
        ("username", "password"),
        [("alice@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)],
    )
    def test_it_refuses_bad_credentials_with_the_same_401(
        self, anonymous, alice, username, password
    ):
        response = login(anonymous, username, password)

        assert response.status_code == 401
        assert response.json() == {
            "detail": "Incorrect email or password.",
            "code": "invalid_credentials",
        }

    def test_it_refuses_an_inactive_user(self, anonymous, alice):
        alice.is_active = False
        alice.save()

        response = login(anonymous, "alice@example.com", PASSWORD)

        assert response.status_code == 401

    def test_it_names_a_missing_field(self, anonymous):
        response = anonymous.post("/auth/login", {"username": "a@example.com"}, format="json")

        assert response.status_code == 400
        assert response.json()["errors"] == {"password": ["This field is required."]}

    def test_it_refuses_grants_other_than_password(self, anonymous, alice):
        response = anonymous.post(
            "/auth/login",
            {"username": "alice@example.com", "password": PASSWORD, "grant_type": "client"},
        )

        assert response.status_code == 400
        assert "grant_type" in response.json()["errors"]

    def test_a_stale_bearer_header_does_not_block_login(self, anonymous, alice):
        anonymous.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

        response = login(anonymous, "alice@example.com", PASSWORD)

        assert response.status_code == 200

    def test_it_records_the_last_login(self, anonymous, alice):
        login(anonymous, "alice@example.com", PASSWORD)

        alice.refresh_from_db()
        assert alice.last_login is not None


class TestRefreshAndLogout:
    def tokens(self, client: APIClient) -> dict[str, str]:
        return login(client, "alice@example.com", PASSWORD).json()

    def test_refresh_returns_a_new_pair_and_retires_the_old_refresh_token(self, anonymous, alice):
        first = self.tokens(anonymous)

        refreshed = anonymous.post(
            "/auth/refresh", {"refresh_token": first["refresh_token"]}, format="json"
        )
        replay = anonymous.post(
            "/auth/refresh", {"refresh_token": first["refresh_token"]}, format="json"
        )

        assert refreshed.status_code == 200
        assert refreshed.json()["refresh_token"] != first["refresh_token"]
        assert replay.status_code == 401
        assert replay.json()["code"] == "invalid_refresh_token"

    def test_refresh_accepts_simplejwts_field_name(self, anonymous, alice):
        first = self.tokens(anonymous)

        response = anonymous.post("/auth/refresh", {"refresh": first["refresh_token"]})

        assert response.status_code == 200

    def test_refresh_needs_a_token(self, anonymous):
        response = anonymous.post("/auth/refresh", {}, format="json")

        assert response.status_code == 400
        assert "refresh_token" in response.json()["errors"]

    @pytest.mark.parametrize("garbage", ["", "abc", "a.b.c"])
    def test_refresh_refuses_garbage(self, anonymous, garbage):
        response = anonymous.post("/auth/refresh", {"refresh_token": garbage or "x"})

        assert response.status_code == 401

    def test_refresh_refuses_an_access_token(self, anonymous, alice):
        first = self.tokens(anonymous)

        response = anonymous.post("/auth/refresh", {"refresh_token": first["access_token"]})

        assert response.status_code == 401

    def test_refresh_stops_for_a_deactivated_user(self, anonymous, alice):
        first = self.tokens(anonymous)
        alice.is_active = False
        alice.save()

        response = anonymous.post("/auth/refresh", {"refresh_token": first["refresh_token"]})

        assert response.status_code == 401

    def test_refresh_stops_for_a_deleted_user(self, anonymous, alice):
        first = self.tokens(anonymous)
        alice.delete()

        response = anonymous.post("/auth/refresh", {"refresh_token": first["refresh_token"]})

        assert response.status_code == 401

    def test_logout_revokes_the_refresh_token(self, anonymous, alice):
        first = self.tokens(anonymous)

        logout = anonymous.post("/auth/logout", {"refresh_token": first["refresh_token"]})
        refresh = anonymous.post("/auth/refresh", {"refresh_token": first["refresh_token"]})

        assert logout.status_code == 204
        assert refresh.status_code == 401


class TestAccessTokens:
    def test_an_expired_token_gets_a_json_401(self, anonymous, alice):
        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=-timedelta(seconds=1))

        response = anonymous.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"
        assert response.json()["detail"]

    def test_a_malformed_token_gets_a_json_401(self, anonymous):
        response = anonymous.get("/auth/me", HTTP_AUTHORIZATION="Bearer abc.def.ghi")

        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"

    def test_a_token_signed_with_another_key_is_refused(self, anonymous, alice):
        import jwt

        forged = jwt.encode(
            {"token_type": "access", "user_id": str(alice.pk), "exp": 4_000_000_000, "jti": "x"},
            "not-the-servers-secret-but-long-enough-000000000",
            algorithm="HS256",
        )

        response = anonymous.get("/auth/me", HTTP_AUTHORIZATION=f"Bearer {forged}")

        assert response.status_code == 401

    def test_no_token_gets_a_json_401(self, anonymous):
        response = anonymous.get("/auth/me")

        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"

    def test_tokens_of_a_deactivated_user_stop_at_once(self, client_for, alice):
        client = client_for(alice)
        assert client.get("/auth/me").status_code == 200

        alice.is_active = False
        alice.save()

        assert client.get("/auth/me").status_code == 401

    def test_tokens_of_a_deleted_user_stop_at_once(self, client_for, alice):
        client = client_for(alice)
        alice.delete()

        assert client.get("/auth/me").status_code == 401


class TestRegister:
    def test_it_creates_a_user_without_tenants(self, anonymous, client_for):
        response = anonymous.post(
            "/auth/register",
            {"email": "New.Person@Example.com", "password": "a-Strong-passw0rd"},
            format="json",
        )

        assert response.status_code == 201
        body = response.json()
        assert body["email"] == "new.person@example.com"
        assert "password" not in body
        user = User.objects.get(pk=body["id"])
        assert user.check_password("a-Strong-passw0rd")
        assert client_for(user).get("/auth/me").json()["tenants"] == []

    def test_it_names_a_taken_email_whatever_its_case(self, anonymous, alice):
        response = anonymous.post(
            "/auth/register",
            {"email": "ALICE@example.com", "password": "a-Strong-passw0rd"},
            format="json",
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["email"]
        assert User.objects.count() == 1

    @pytest.mark.parametrize("password", ["short", "password123", "12345678901", "bob@example"])
    def test_it_names_a_weak_password(self, anonymous, password):
        response = anonymous.post(
            "/auth/register", {"email": "bob@example.com", "password": password}, format="json"
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["password"]
        assert not User.objects.filter(email="bob@example.com").exists()

    def test_it_names_an_invalid_email(self, anonymous):
        response = anonymous.post(
            "/auth/register", {"email": "not-an-email", "password": "a-Strong-passw0rd"}
        )

        assert response.status_code == 400
        assert "email" in response.json()["errors"]

    def test_it_can_be_closed(self, anonymous, settings):
        settings.ALLOW_REGISTRATION = False

        response = anonymous.post(
            "/auth/register", {"email": "bob@example.com", "password": "a-Strong-passw0rd"}
        )

        assert response.status_code == 403
        assert response.json()["code"] == "registration_closed"


class TestMe:
    def test_it_lists_the_callers_tenant_roles(self, client_for, tenant_a):
        response = client_for(tenant_a.manager).get("/auth/me")

        assert response.status_code == 200
        assert response.json()["tenants"] == [
            {
                "tenant_id": tenant_a.tenant.pk,
                "tenant_name": tenant_a.tenant.name,
                "tenant_slug": "alpha",
                "role": "manager",
            }
        ]
