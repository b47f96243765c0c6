"""How a request's tenant is chosen and refused, seen through a tenant-scoped route."""

from __future__ import annotations

import pytest

from apps.tenants.models import Role, UserRole

pytestmark = pytest.mark.django_db


def test_a_member_of_one_tenant_needs_no_header(client_for, tenant_a, tenant_b):
    response = client_for(tenant_a.viewer).get("/devices")

    assert response.status_code == 200


def test_a_member_of_several_tenants_must_name_one(client_for, tenant_a, tenant_b):
    UserRole.objects.create(user=tenant_a.viewer, tenant=tenant_b.tenant, role=Role.VIEWER)

    response = client_for(tenant_a.viewer).get("/devices")

    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"
    assert list(response.json()["errors"]) == ["X-Tenant-Id"]


def test_the_header_picks_among_the_callers_tenants(client_for, tenant_a, tenant_b):
    UserRole.objects.create(user=tenant_a.viewer, tenant=tenant_b.tenant, role=Role.VIEWER)

    response = client_for(tenant_a.viewer, tenant=tenant_b.tenant).get("/devices")

    assert response.status_code == 200


def test_a_tenant_the_caller_has_no_role_in_is_forbidden(client_for, tenant_a, tenant_b):
    response = client_for(tenant_a.admin, tenant=tenant_b.tenant).get("/devices")

    assert response.status_code == 403
    assert response.json()["code"] == "not_a_member"


def test_an_unknown_tenant_looks_the_same_as_a_foreign_one(client_for, tenant_a):
    response = client_for(tenant_a.admin, tenant=987654).get("/devices")

    assert response.status_code == 403
    assert response.json()["code"] == "not_a_member"


@pytest.mark.parametrize("header", ["abc", "-3", "0", "1.5"])
def test_a_malformed_header_is_named(client_for, tenant_a, header):
    client = client_for(tenant_a.admin)

    response = client.get("/devices", HTTP_X_TENANT_ID=header)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["X-Tenant-Id"]


def test_a_user_without_tenants_is_forbidden(client_for, outsider):
    response = client_for(outsider).get("/devices")

    assert response.status_code == 403
    assert response.json()["code"] == "no_tenant"


def test_a_superuser_acts_as_admin_in_any_tenant(client_for, superuser, tenant_a):
    response = client_for(superuser, tenant=tenant_a.tenant).post(
        "/devices", {"name": "Truck"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["tenant_id"] == tenant_a.tenant.pk


def test_a_superuser_must_name_the_tenant(client_for, superuser, tenant_a):
    response = client_for(superuser).get("/devices")

    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"


def test_a_superuser_gets_404_for_an_unknown_tenant(client_for, superuser):
    response = client_for(superuser, tenant=987654).get("/devices")

    assert response.status_code == 404
    assert response.json()["code"] == "tenant_not_found"


def test_the_path_wins_over_the_header(client_for, tenant_a, tenant_b):
    client = client_for(tenant_a.viewer, tenant=tenant_b.tenant)

    response = client.get(f"/tenants/{tenant_a.tenant.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == tenant_a.tenant.pk


def test_anonymous_callers_are_asked_to_authenticate(anonymous, tenant_a):
    response = anonymous.get("/devices", HTTP_X_TENANT_ID=str(tenant_a.tenant.pk))

    assert response.status_code == 401
