"""Access ends at once: deactivated or deleted users, and users whose role is revoked.

Tokens come from a real login, so the test covers what a client holds, not a token made
for the test.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.tenants.models import Role, UserRole
from conftest import PASSWORD

pytestmark = pytest.mark.django_db


def log_in(email: str) -> dict[str, str]:
    response = APIClient().post("/auth/login", {"username": email, "password": PASSWORD})
    assert response.status_code == 200
    return response.json()


def bearer(tokens: dict[str, str], tenant_id: int | None = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    if tenant_id is not None:
        headers["HTTP_X_TENANT_ID"] = str(tenant_id)
    client.credentials(**headers)
    return client


def refresh(tokens: dict[str, str]):
    return APIClient().post("/auth/refresh", {"refresh_token": tokens["refresh_token"]})


class TestDeactivatedOrDeletedUsers:
    def test_a_deactivated_users_access_token_stops_on_the_next_request(self, tenant_a):
        tokens = log_in(tenant_a.manager.email)
        client = bearer(tokens)
        assert client.get("/devices").status_code == 200

        tenant_a.manager.is_active = False
        tenant_a.manager.save(update_fields=["is_active"])

        response = client.get("/devices")
        assert response.status_code == 401
        assert response.json()["code"] == "user_inactive"
        assert client.get("/auth/me").status_code == 401

    def test_a_deactivated_users_refresh_token_is_refused(self, tenant_a):
        tokens = log_in(tenant_a.manager.email)
        tenant_a.manager.is_active = False
        tenant_a.manager.save(update_fields=["is_active"])

        response = refresh(tokens)

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_refresh_token"

    def test_reactivating_a_user_makes_their_unexpired_tokens_work_again(self, tenant_a):
        tokens = log_in(tenant_a.manager.email)
        tenant_a.manager.is_active = False
        tenant_a.manager.save(update_fields=["is_active"])
        assert bearer(tokens).get("/devices").status_code == 401

        tenant_a.manager.is_active = True
        tenant_a.manager.save(update_fields=["is_active"])

        # Deactivation is a switch, not a revocation list: the same token works again.
        assert bearer(tokens).get("/devices").status_code == 200

    def test_a_deleted_users_tokens_stop_at_once(self, tenant_a):
        tokens = log_in(tenant_a.manager.email)
        tenant_a.manager.delete()

        response = bearer(tokens).get("/devices")

        assert response.status_code == 401
        assert response.json()["code"] == "user_not_found"
        assert refresh(tokens).status_code == 401

    def test_a_deactivated_operator_loses_the_admin_at_once(self, operator, superuser):
        assert operator.get("/admin/").status_code == 200

        superuser.is_active = False
        superuser.save(update_fields=["is_active"])

        response = operator.get("/admin/")
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


class TestRevokedRoles:
    def test_a_user_removed_from_a_tenant_loses_it_on_the_next_request(self, tenant_a, tenant_b):
        UserRole.objects.create(user=tenant_a.viewer, tenant=tenant_b.tenant, role=Role.VIEWER)
        tokens = log_in(tenant_a.viewer.email)
        in_b = bearer(tokens, tenant_b.tenant.pk)
        assert in_b.get("/devices").status_code == 200
        assert in_b.get(f"/tenants/{tenant_b.tenant.pk}/dashboards").status_code == 200

        revoke = bearer(log_in(tenant_b.admin.email)).delete(
            f"/tenants/{tenant_b.tenant.pk}/users/{tenant_a.viewer.pk}/roles/viewer"
        )
        assert revoke.status_code == 204

        for path in ["/devices", "/telemetry/latest", f"/tenants/{tenant_b.tenant.pk}"]:
            response = in_b.get(path)
            assert response.status_code == 403, path
            assert response.json()["code"] == "not_a_member"
        assert in_b.get(f"/tenants/{tenant_b.tenant.pk}/dashboards").status_code == 403
        tenants = bearer(tokens).get("/tenants").json()
        assert [tenant["id"] for tenant in tenants] == [tenant_a.tenant.pk]
        # The tenant the user keeps is untouched.
        assert bearer(tokens, tenant_a.tenant.pk).get("/devices").status_code == 200

    def test_a_user_of_one_tenant_who_loses_it_has_no_tenant_at_all(self, tenant_a):
        tokens = log_in(tenant_a.viewer.email)
        assert bearer(tokens).get("/devices").status_code == 200

        UserRole.objects.filter(user=tenant_a.viewer).delete()

        response = bearer(tokens).get("/devices")
        assert response.status_code == 403
        assert response.json()["code"] == "no_tenant"

    def test_a_demoted_admin_loses_admin_rights_at_once(self, tenant_a):
        second_admin = tenant_a.manager
        UserRole.objects.filter(user=second_admin).update(role=Role.ADMIN)
        client = bearer(log_in(second_admin.email))
        roles_url = f"/tenants/{tenant_a.tenant.pk}/users/{tenant_a.viewer.pk}/roles/manager"
        assert client.post(roles_url).status_code == 200

        UserRole.objects.filter(user=second_admin).update(role=Role.VIEWER)

        response = client.post(roles_url)
        assert response.status_code == 403
        assert response.json()["code"] == "role_required"
