"""Tenant limits in the admin: operators set them, tenant admins only read them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.devices import services as device_services

pytestmark = pytest.mark.django_db


def change_page(tenant) -> str:
    return reverse("admin:tenants_tenant_change", args=[tenant.pk])


def test_an_operator_sets_a_tenants_limits_and_sees_their_use(operator, tenant_a):
    tenant = tenant_a.tenant
    device_services.create_device(tenant=tenant, name="Truck")

    page = operator.get(change_page(tenant))

    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="max_devices"' in body
    assert "devices: 1 of no limit" in body
    assert "stored points: 0 of no limit" in body

    response = operator.post(
        change_page(tenant),
        {
            "name": tenant.name,
            "slug": tenant.slug,
            "max_devices": "5",
            "device_points_per_minute": "60",
            "tenant_points_per_minute": "",
            "max_stored_points": "",
            "telemetry_retention_days": "",
            "user_roles-TOTAL_FORMS": "0",
            "user_roles-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert (tenant.max_devices, tenant.device_points_per_minute) == (5, 60)
    assert tenant.tenant_points_per_minute is None


def test_a_tenant_admin_reads_the_limits_but_cannot_change_them(tenant_a):
    tenant = tenant_a.tenant
    tenant.max_devices = 3
    tenant.save()
    tenant_a.admin.is_staff = True
    tenant_a.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_a.admin)

    page = client.get(change_page(tenant))

    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="max_devices"' not in body
    assert "devices: 0 of 3" in body
