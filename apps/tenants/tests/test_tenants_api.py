from __future__ import annotations

import pytest

from apps.tenants.models import Role, Tenant, UserRole

pytestmark = pytest.mark.django_db


class TestTenantList:
    def test_a_user_sees_only_their_tenants_with_their_role(self, client_for, tenant_a, tenant_b):
        response = client_for(tenant_a.manager).get("/tenants")

        assert response.status_code == 200
        assert [(t["slug"], t["role"]) for t in response.json()] == [("alpha", "manager")]

    def test_a_superuser_sees_every_tenant(self, client_for, superuser, tenant_a, tenant_b):
        response = client_for(superuser).get("/tenants")

        assert [t["slug"] for t in response.json()] == ["alpha", "bravo"]
        assert {t["role"] for t in response.json()} == {"admin"}
        assert response["X-Total-Count"] == "2"

    def test_an_outsider_sees_none(self, client_for, outsider, tenant_a):
        assert client_for(outsider).get("/tenants").json() == []


class TestTenantCreate:
    def test_a_superuser_creates_a_tenant_with_a_derived_slug(self, client_for, superuser):
        response = client_for(superuser).post("/tenants", {"name": "Acme Logistics"})

        assert response.status_code == 201
        assert response.json()["slug"] == "acme-logistics"
        assert Tenant.objects.filter(slug="acme-logistics").exists()

    def test_a_derived_slug_avoids_taken_ones(self, client_for, superuser, tenant_a):
        Tenant.objects.create(name="x", slug="acme")

        response = client_for(superuser).post("/tenants", {"name": "ACME"})

        assert response.json()["slug"] == "acme-2"

    def test_a_taken_slug_is_named(self, client_for, superuser, tenant_a):
        response = client_for(superuser).post("/tenants", {"name": "Other", "slug": "alpha"})

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["slug"]

    def test_the_first_admin_can_be_named(self, client_for, superuser, outsider):
        response = client_for(superuser).post(
            "/tenants", {"name": "Acme", "admin_user_id": outsider.pk}, format="json"
        )

        assert response.status_code == 201
        membership = UserRole.objects.get(user=outsider)
        assert (membership.tenant_id, membership.role) == (response.json()["id"], Role.ADMIN)

    @pytest.mark.parametrize("role", list(Role))
    def test_tenant_members_cannot_create_tenants(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).post("/tenants", {"name": "Mine"})

        assert response.status_code == 403
        assert not Tenant.objects.filter(name="Mine").exists()

    def test_a_name_is_required(self, client_for, superuser):
        response = client_for(superuser).post("/tenants", {}, format="json")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["name"]


class TestTenantDetail:
    @pytest.mark.parametrize("role", list(Role))
    def test_members_read_their_tenant(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).get(f"/tenants/{tenant_a.tenant.pk}")

        assert response.status_code == 200
        assert response.json()["role"] == role.value

    @pytest.mark.parametrize("role", list(Role))
    def test_members_of_another_tenant_are_forbidden(self, client_for, tenant_a, tenant_b, role):
        client = client_for(tenant_a.member(role))

        read = client.get(f"/tenants/{tenant_b.tenant.pk}")
        change = client.patch(f"/tenants/{tenant_b.tenant.pk}", {"name": "Hijacked"})

        assert (read.status_code, change.status_code) == (403, 403)
        assert "bravo" not in read.content.decode()
        tenant_b.tenant.refresh_from_db()
        assert tenant_b.tenant.name == "Fleet BRAVO"

    def test_an_admin_renames_the_tenant(self, client_for, tenant_a):
        response = client_for(tenant_a.admin).patch(
            f"/tenants/{tenant_a.tenant.pk}", {"name": "Alpha Haulage"}
        )

        assert response.status_code == 200
        tenant_a.tenant.refresh_from_db()
        assert tenant_a.tenant.name == "Alpha Haulage"

    @pytest.mark.parametrize("role", [Role.MANAGER, Role.VIEWER])
    def test_non_admins_cannot_rename_it(self, client_for, tenant_a, role):
        response = client_for(tenant_a.member(role)).patch(
            f"/tenants/{tenant_a.tenant.pk}", {"name": "Mine"}
        )

        assert response.status_code == 403
        assert response.json()["code"] == "role_required"
