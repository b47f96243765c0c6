from __future__ import annotations

import pytest

from apps.tenants.models import Role, UserRole

pytestmark = pytest.mark.django_db


def roles_url(tenant_id: int, user_id: int, role: str | None = None) -> str:
    url = f"/tenants/{tenant_id}/users/{user_id}/roles"
    return f"{url}/{role}" if role else url


class TestReadRoles:
    def test_an_admin_reads_anyones_roles(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).get(roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk))

        assert response.status_code == 200
        assert [(r["user_id"], r["role"]) for r in response.json()] == [
            (tenant_a.viewer.pk, "viewer")
        ]

    @pytest.mark.parametrize("role", [Role.MANAGER, Role.VIEWER])
    def test_a_member_reads_their_own_roles(self, client_for, tenant_a, role):
        user = tenant_a.member(role)

        response = client_for(user).get(roles_url(tenant_a.tenant.pk, user.pk))

        assert response.status_code == 200
        assert response.json()[0]["role"] == role.value

    def test_a_viewer_cannot_read_other_users_roles(self, client_for, tenant_a):
        response = client_for(tenant_a.viewer).get(roles_url(tenant_a.tenant.pk, tenant_a.admin.pk))

        assert response.status_code == 403

    def test_a_non_member_reads_as_an_empty_list(self, client_for, tenant_a, outsider):
        response = client_for(tenant_a.admin).get(roles_url(tenant_a.tenant.pk, outsider.pk))

        assert response.json() == []

    def test_another_tenants_admin_is_forbidden(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_b.admin).get(roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk))

        assert response.status_code == 403
        assert "viewer@alpha" not in response.content.decode()

    def test_managers_list_the_members(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_a.manager).get(f"/tenants/{tenant_a.tenant.pk}/users")

        assert response.status_code == 200
        assert sorted(m["email"] for m in response.json()) == [
            "admin@alpha.example.com",
            "manager@alpha.example.com",
            "viewer@alpha.example.com",
        ]

    def test_viewers_cannot_list_the_members(self, client_for, tenant_a):
        response = client_for(tenant_a.viewer).get(f"/tenants/{tenant_a.tenant.pk}/users")

        assert response.status_code == 403


class TestGrantRole:
    def test_an_admin_grants_a_role_to_a_new_member(self, client_for, tenant_a, outsider):
        response = client_for(tenant_a.admin).post(
            roles_url(tenant_a.tenant.pk, outsider.pk, "manager")
        )

        assert response.status_code == 201
        assert response.json()["role"] == "manager"
        assert UserRole.objects.get(user=outsider, tenant=tenant_a.tenant).role == Role.MANAGER

    def test_granting_replaces_the_previous_role(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).post(
            roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk, "admin")
        )

        assert response.status_code == 200
        assert UserRole.objects.filter(user=tenant_a.viewer).count() == 1
        assert UserRole.objects.get(user=tenant_a.viewer).role == Role.ADMIN

    def test_an_unknown_role_is_named(self, client_for, tenant_a, outsider):
        response = client_for(tenant_a.admin).post(
            roles_url(tenant_a.tenant.pk, outsider.pk, "owner")
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["role"]
        assert not UserRole.objects.filter(user=outsider).exists()

    def test_an_unknown_user_is_404(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).post(roles_url(tenant_a.tenant.pk, 987654, "viewer"))

        assert response.status_code == 404

    @pytest.mark.parametrize("role", [Role.MANAGER, Role.VIEWER])
    def test_only_admins_grant(self, client_for, tenant_a, outsider, role):
        response = client_for(tenant_a.member(role)).post(
            roles_url(tenant_a.tenant.pk, outsider.pk, "admin")
        )

        assert response.status_code == 403
        assert not UserRole.objects.filter(user=outsider).exists()

    def test_another_tenants_admin_cannot_grant(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_b.admin).post(
            roles_url(tenant_a.tenant.pk, tenant_b.admin.pk, "admin")
        )

        assert response.status_code == 403
        assert not UserRole.objects.filter(user=tenant_b.admin, tenant=tenant_a.tenant).exists()

    def test_the_last_admin_cannot_demote_themselves(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).post(
            roles_url(tenant_a.tenant.pk, tenant_a.admin.pk, "viewer")
        )

        assert response.status_code == 409
        assert UserRole.objects.get(user=tenant_a.admin).role == Role.ADMIN

    def test_a_superuser_grants_in_any_tenant(self, client_for, superuser, tenant_a, outsider):
        response = client_for(superuser).post(roles_url(tenant_a.tenant.pk, outsider.pk, "viewer"))

        assert response.status_code == 201


class TestRevokeRole:
    def test_an_admin_removes_a_role(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk, "viewer")
        )

        assert response.status_code == 204
        assert not UserRole.objects.filter(user=tenant_a.viewer).exists()
        assert client_for(tenant_a.viewer).get("/devices").status_code == 403

    def test_a_role_the_user_does_not_hold_is_404(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk, "manager")
        )

        assert response.status_code == 404
        assert UserRole.objects.filter(user=tenant_a.viewer).exists()

    def test_the_last_admin_cannot_be_removed(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.admin.pk, "admin")
        )

        assert response.status_code == 409
        assert response.json()["code"] == "last_admin"

    def test_an_admin_can_leave_when_another_admin_remains(self, client_for, tenant_a):
        UserRole.objects.filter(user=tenant_a.manager).update(role=Role.ADMIN)

        response = client_for(tenant_a.admin).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.admin.pk, "admin")
        )

        assert response.status_code == 204

    @pytest.mark.parametrize("role", [Role.MANAGER, Role.VIEWER])
    def test_only_admins_revoke(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.admin.pk, "admin")
        )

        assert response.status_code == 403

    def test_another_tenants_admin_cannot_revoke(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_b.admin).delete(
            roles_url(tenant_a.tenant.pk, tenant_a.viewer.pk, "viewer")
        )

        assert response.status_code == 403
        assert UserRole.objects.filter(user=tenant_a.viewer).exists()
