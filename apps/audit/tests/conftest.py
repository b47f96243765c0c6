from __future__ import annotations

import pytest

from apps.devices import services as device_services
from apps.devices.models import Device


@pytest.fixture
def device(tenant_a) -> Device:
    created, _ = device_services.create_device(tenant=tenant_a.tenant, name="Truck A")
    return created


@pytest.fixture
def foreign_device(tenant_b) -> Device:
    created, _ = device_services.create_device(tenant=tenant_b.tenant, name="Bravo secret truck")
    return created
