from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.devices import services
from apps.tenants.models import Role, UserRole
from quantumfleet.environment import Environment

pytestmark = pytest.mark.django_db


def run_bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap_demo", stdout=out)
    return out.getvalue()


def test_it_creates_the_seeds_login_and_a_demo_device(settings):
    settings.DJANGO_ENV = Environment.DEVELOPMENT

    output = run_bootstrap()

    login = APIClient().post(
        "/auth/login",
        "username=admin@example.com&password=Admin123!",
        content_type="application/x-www-form-urlencoded",
    )
    assert login.status_code == 200
    device = services.find_device_by_token(settings.DEMO_DEVICE_TOKEN)
    assert device is not None
    assert device.model == "FMC650"
    assert UserRole.objects.get(user__email="admin@example.com").role == Role.ADMIN
    assert "admin@example.com" in output
    assert settings.DEMO_DEVICE_TOKEN in output


def test_running_it_twice_changes_nothing(settings):
    settings.DJANGO_ENV = Environment.DEVELOPMENT
    run_bootstrap()

    second = run_bootstrap()

    assert "Created" not in second
    assert UserRole.objects.count() == 1


@pytest.mark.parametrize("environment", [Environment.PRODUCTION, Environment.TEST])
def test_it_refuses_outside_development(settings, environment):
    settings.DJANGO_ENV = environment

    with pytest.raises(CommandError, match="DJANGO_ENV=development"):
        run_bootstrap()
