"""The audit trail in the admin: readable, never writable."""

from __future__ import annotations

import pytest

from apps.audit import services
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_operators_read_events_and_sessions_but_cannot_change_them(operator, tenant_a, device):
    event = services.record_event(
        "device.connected", tenant_id=tenant_a.tenant.pk, device_id=device.pk, ip="192.0.2.1"
    )
    services.record_event("user.login", tenant_id=tenant_a.tenant.pk, user_id=tenant_a.admin.pk)

    events = operator.get("/admin/audit/auditevent/")
    detail = operator.get(f"/admin/audit/auditevent/{event.pk}/change/")
    sessions = operator.get("/admin/audit/usersession/")
    added = operator.get("/admin/audit/auditevent/add/")
    changed = operator.post(f"/admin/audit/auditevent/{event.pk}/change/", {"type": "x.y"})
    deleted = operator.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})

    assert (events.status_code, detail.status_code, sessions.status_code) == (200, 200, 200)
    assert "device.connected" in events.content.decode()
    assert tenant_a.admin.email in sessions.content.decode()
    assert (added.status_code, changed.status_code, deleted.status_code) == (403, 403, 403)
    assert AuditEvent.objects.get(pk=event.pk).type == "device.connected"


def test_deleting_a_tenant_keeps_its_trail_for_operators(operator, tenant_a):
    event = services.record_event("report.exported", tenant_id=tenant_a.tenant.pk)

    response = operator.post(f"/admin/tenants/tenant/{tenant_a.tenant.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert AuditEvent.objects.get(pk=event.pk).tenant_id is None
