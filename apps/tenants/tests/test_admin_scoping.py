"""Tenant admins in the Django admin: their tenants' rows only, in every tenant-owned page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditEvent, UserSession
from apps.connectors.models import (
    Connector,
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Direction,
    LogStatus,
    Rule,
    RuleOperator,
)
from apps.dashboards.models import Dashboard, SavedQuery
from apps.devices import services as device_services
from apps.devices.models import Device, DeviceCommand, DeviceSession
from apps.telemetry.models import DeviceState
from apps.tenants.models import Role, Tenant, UserRole

pytestmark = pytest.mark.django_db

SCOPED_MODELS = [
    Tenant,
    UserRole,
    Device,
    DeviceCommand,
    DeviceSession,
    DeviceState,
    Connector,
    ConnectorCall,
    ConnectorLog,
    Rule,
    Dashboard,
    SavedQuery,
    AuditEvent,
    UserSession,
]


def make_tenant_objects(tenant: Tenant, member: User, suffix: str = "") -> dict[type[Model], Any]:
    """One row of every tenant-owned model the admin shows, all of ``tenant``."""
    now = timezone.now()
    device, _ = device_services.create_device(tenant=tenant, name=f"Truck {tenant.slug}{suffix}")
    connector = Connector.objects.create(
        tenant=tenant,
        name=f"Sink {tenant.slug}{suffix}",
        kind=ConnectorKind.OUTBOUND_HTTP,
        config={"url": "https://sink.example.com/in"},
    )
    call = ConnectorCall.objects.create(tenant=tenant, connector=connector)
    return {
        Tenant: tenant,
        UserRole: UserRole.objects.get(tenant=tenant, user=member),
        Device: device,
        DeviceCommand: DeviceCommand.objects.create(
            tenant=tenant, device=device, text="getinfo", expires_at=now + timedelta(hours=1)
        ),
        DeviceSession: DeviceSession.objects.create(
            tenant=tenant, device=device, transport="teltonika-tcp", started_at=now, last_seen=now
        ),
        DeviceState: DeviceState.objects.create(
            tenant=tenant, device=device, last_ts=now, last_received_at=now, last_data={"v": 1}
        ),
        Connector: connector,
        ConnectorCall: call,
        ConnectorLog: ConnectorLog.objects.create(
            tenant=tenant,
            connector=connector,
            call=call,
            direction=Direction.OUTBOUND,
            status=LogStatus.FAILED,
        ),
        Rule: Rule.objects.create(
            tenant=tenant,
            name=f"Overspeed {tenant.slug}{suffix}",
            connector=connector,
            path="gps.speed",
            operator=RuleOperator.GT,
            value=120,
        ),
        Dashboard: Dashboard.objects.create(tenant=tenant, name=f"Board {tenant.slug}{suffix}"),
        SavedQuery: SavedQuery.objects.create(
            tenant=tenant, name=f"Query {tenant.slug}{suffix}", query={"device_ids": [device.pk]}
        ),
        AuditEvent: AuditEvent.objects.create(
            tenant=tenant, type="report.exported", ts=now, device=device
        ),
        UserSession: UserSession.objects.create(
            tenant=tenant, user=member, started_at=now, last_seen=now
        ),
    }


def url(obj: Model, view: str) -> str:
    meta = obj._meta
    args = [] if view == "changelist" else [obj.pk]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


@pytest.fixture
def world(tenant_a, tenant_b) -> dict[str, dict[type[Model], Any]]:
    return {
        "a": make_tenant_objects(tenant_a.tenant, tenant_a.viewer),
        "b": make_tenant_objects(tenant_b.tenant, tenant_b.viewer),
    }


@pytest.fixture
def staff_admin_of_a(tenant_a) -> Client:
    """The tenant admin of A, made staff so that the admin site lets them in."""
    tenant_a.admin.is_staff = True
    tenant_a.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_a.admin)
    return client


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda model: model.__name__)
def test_a_tenant_admin_lists_and_opens_only_their_tenants_rows(staff_admin_of_a, world, model):
    own, foreign = world["a"][model], world["b"][model]

    listing = staff_admin_of_a.get(url(own, "changelist"))
    opened_own = staff_admin_of_a.get(url(own, "change"))
    opened_foreign = staff_admin_of_a.get(url(foreign, "change"))

    assert listing.status_code == 200
    page = listing.content.decode()
    assert url(own, "change") in page
    assert url(foreign, "change") not in page
    assert opened_own.status_code == 200
    # The admin answers an object outside the queryset as missing: back to the index.
    assert opened_foreign.status_code == 302
    assert opened_foreign["Location"] == reverse("admin:index")


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda model: model.__name__)
def test_a_tenant_admin_cannot_change_or_delete_another_tenants_rows(
    staff_admin_of_a, world, model
):
    foreign = world["b"][model]
    before = model._default_manager.filter(pk=foreign.pk).values().get()

    changed = staff_admin_of_a.post(url(foreign, "change"), {"name": "taken over"})
    deleted = staff_admin_of_a.post(url(foreign, "delete"), {"post": "yes"})
    history = staff_admin_of_a.get(url(foreign, "history"))

    assert changed.status_code in (302, 403, 404)
    assert deleted.status_code in (302, 403, 404)
    if deleted.status_code == 302:
        assert deleted["Location"] == reverse("admin:index")
    assert history.status_code in (302, 403, 404)
    assert model._default_manager.filter(pk=foreign.pk).values().get() == before


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda model: model.__name__)
def test_the_superuser_sees_both_tenants(operator, world, model):
    listing = operator.get(url(world["a"][model], "changelist")).content.decode()

    assert url(world["a"][model], "change") in listing
    assert url(world["b"][model], "change") in listing


def test_a_tenant_admin_deletes_their_own_device(staff_admin_of_a, world):
    device = world["a"][Device]

    response = staff_admin_of_a.post(url(device, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert not Device.objects.filter(pk=device.pk).exists()


def test_a_tenant_admin_cannot_add_or_delete_tenants(staff_admin_of_a, world):
    added = staff_admin_of_a.post(
        reverse("admin:tenants_tenant_add"), {"name": "Mine", "slug": "mine"}
    )
    deleted = staff_admin_of_a.post(url(world["a"][Tenant], "delete"), {"post": "yes"})

    assert (added.status_code, deleted.status_code) == (403, 403)
    assert not Tenant.objects.filter(slug="mine").exists()
    assert Tenant.objects.filter(pk=world["a"][Tenant].pk).exists()


def test_foreign_key_choices_offer_only_their_tenants(staff_admin_of_a, tenant_a, world):
    form = staff_admin_of_a.get(reverse("admin:devices_devicecommand_add")).context["adminform"]
    device_choices = set(form.form.fields["device"].queryset)
    tenant_form = staff_admin_of_a.get(reverse("admin:devices_device_add")).context["adminform"]
    tenant_choices = set(tenant_form.form.fields["tenant"].queryset)

    assert device_choices == {world["a"][Device]}
    assert tenant_choices == {tenant_a.tenant}


def test_a_tenant_admin_cannot_queue_a_command_for_a_foreign_device(staff_admin_of_a, world):
    expires_at = timezone.now() + timedelta(hours=1)

    response = staff_admin_of_a.post(
        reverse("admin:devices_devicecommand_add"),
        {
            "device": world["b"][Device].pk,
            "text": "cpureset",
            "expires_at_0": expires_at.strftime("%Y-%m-%d"),
            "expires_at_1": expires_at.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 200
    assert "device" in response.context["adminform"].form.errors
    assert not DeviceCommand.objects.filter(text="cpureset").exists()


def test_the_tenant_filter_lists_only_their_tenants(staff_admin_of_a, tenant_b, world):
    page = staff_admin_of_a.get(reverse("admin:devices_device_changelist")).content.decode()

    assert tenant_b.tenant.name not in page


def test_the_tenant_autocomplete_offers_only_their_tenants(staff_admin_of_a, tenant_a, world):
    response = staff_admin_of_a.get(
        "/admin/autocomplete/",
        {"app_label": "devices", "model_name": "device", "field_name": "tenant", "term": "Fleet"},
    )

    assert response.status_code == 200
    assert [item["text"] for item in response.json()["results"]] == [tenant_a.tenant.name]


def test_staff_with_only_a_viewer_role_sees_no_tenant_pages(tenant_a, world):
    tenant_a.viewer.is_staff = True
    tenant_a.viewer.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_a.viewer)

    index = client.get(reverse("admin:index"))
    devices = client.get(reverse("admin:devices_device_changelist"))

    assert index.status_code == 200
    assert reverse("admin:devices_device_changelist") not in index.content.decode()
    assert devices.status_code == 403


def test_an_admin_of_two_tenants_sees_both(tenant_a, tenant_b, world):
    UserRole.objects.create(user=tenant_a.admin, tenant=tenant_b.tenant, role=Role.ADMIN)
    tenant_a.admin.is_staff = True
    tenant_a.admin.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(tenant_a.admin)

    page = client.get(reverse("admin:devices_device_changelist")).content.decode()

    assert url(world["a"][Device], "change") in page
    assert url(world["b"][Device], "change") in page
