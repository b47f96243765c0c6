"""Create the development demo: a tenant, the seed's admin login and a demo device."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.models import User
from apps.dashboards import services as dashboard_services
from apps.devices import services as device_services
from apps.devices.models import Device, DeviceProtocol
from apps.tenants import services as tenant_services
from apps.tenants.models import Role, Tenant, UserRole
from quantumfleet.environment import Environment

DEMO_TENANT_SLUG = "demo"
DEMO_DEVICE_IMEI = "356307042441013"


class Command(BaseCommand):
    help = (
        "Create, if missing, a demo tenant, the admin user admin@example.com and a demo "
        "FMC650 device. Development only: the password is public."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DJANGO_ENV != Environment.DEVELOPMENT:
            raise CommandError(
                "bootstrap_demo creates a login with a publicly known password; it runs only "
                "with DJANGO_ENV=development."
            )

        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=DEMO_TENANT_SLUG).first() or (
                tenant_services.create_tenant(name="Demo Fleet", slug=DEMO_TENANT_SLUG)
            )
            admin = self.ensure_admin(tenant)
            device = self.ensure_device(tenant)
            if device.tenant_id == tenant.pk and dashboard_services.ensure_demo_dashboard(
                tenant=tenant, device_id=device.pk
            ):
                self.stdout.write(f"Created dashboard {dashboard_services.DEMO_DASHBOARD_NAME}.")

        base = f"http://{display_host(settings.API_HOST)}:{settings.API_PORT}"
        self.stdout.write(
            self.style.SUCCESS("Quantum Fleet demo is ready.")
            + f"\n  Admin site   {base}/admin/   ({admin.email} / {settings.DEMO_ADMIN_PASSWORD})"
            + f"\n  API docs     {base}/api/docs/"
            + f"\n  Log in       curl -s -X POST {base}/auth/login"
            + ' -H "Content-Type: application/x-www-form-urlencoded"'
            + f' --data "username={admin.email}&password={settings.DEMO_ADMIN_PASSWORD}"'
            + f"\n  Tenant       {tenant.name} (id {tenant.pk})"
            + f"\n  Device       {device.name} (id {device.pk}, IMEI {device.external_id},"
            + f" ingest token {settings.DEMO_DEVICE_TOKEN})"
            + f"\n  Dashboards   {base}/tenants/{tenant.pk}/dashboards"
        )

    def ensure_admin(self, tenant: Tenant) -> User:
        email = settings.DEMO_ADMIN_EMAIL
        admin = User.objects.filter(email=email).first()
        if admin is None:
            # An existing account keeps its password: someone may have changed it.
            admin = User.objects.create_superuser(email, settings.DEMO_ADMIN_PASSWORD)
            self.stdout.write(f"Created superuser {email}.")
        if not UserRole.objects.filter(user=admin, tenant=tenant).exists():
            tenant_services.grant_role(tenant=tenant, user=admin, role=Role.ADMIN)
        return admin

    def ensure_device(self, tenant: Tenant) -> Device:
        device = Device.objects.filter(external_id=DEMO_DEVICE_IMEI).first()
        if device is not None:
            return device
        device, _ = device_services.create_device(
            tenant=tenant,
            token=settings.DEMO_DEVICE_TOKEN,
            name="Demo FMC650",
            external_id=DEMO_DEVICE_IMEI,
            model="FMC650",
            protocol=DeviceProtocol.TELTONIKA,
        )
        self.stdout.write(f"Created device {device.name}.")
        return device


def display_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
