"""Create the tenants and devices of fault runs in the private database.

Run as ``python -m tests.faults.seed '<json list of runs>'`` with DATABASE_URL pointing at
the private PostgreSQL; prints the tenant and device ids of each run as JSON. Each tenant
also gets an active rule, so that every stored batch queues a rule task on the Celery
broker (Redis), as in a deployment that uses rules.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def seed(spec: dict[str, Any]) -> dict[str, Any]:
    from apps.connectors.models import Connector, ConnectorKind, Rule, RuleOperator
    from apps.devices import services as device_services
    from apps.devices.models import DeviceProtocol
    from apps.tenants.models import Tenant

    tenant = Tenant.objects.create(name=f"Fault run {spec['slug']}", slug=spec["slug"])
    ids: dict[str, int] = {}
    for key in spec["devices"]:
        fields: dict[str, Any] = {"name": f"Fault device {key}"}
        if spec["protocol"] == "teltonika":
            fields.update(external_id=key, model="FMC650", protocol=DeviceProtocol.TELTONIKA)
            device, _ = device_services.create_device(tenant=tenant, **fields)
        else:
            device, _ = device_services.create_device(tenant=tenant, token=key, **fields)
        ids[key] = device.pk
    if spec.get("rule"):
        # Never reached: no worker runs. Only the queueing on ingest matters here.
        connector = Connector.objects.create(
            tenant=tenant,
            name="Fault run sink",
            kind=ConnectorKind.OUTBOUND_HTTP,
            config={"url": "http://127.0.0.1:9/never"},
        )
        Rule.objects.create(
            tenant=tenant,
            name="Every point",
            connector=connector,
            path="seq",
            operator=RuleOperator.LT,
            value=-1,
        )
    return {"tenant_id": tenant.pk, "devices": ids}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumfleet.settings")
    import django

    django.setup()
    results = [seed(spec) for spec in json.loads(sys.argv[1])]
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
