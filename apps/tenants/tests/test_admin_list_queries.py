"""Admin lists cost the same number of queries with few rows or many (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.tenants.tests.test_admin_scoping import SCOPED_MODELS, make_tenant_objects

pytestmark = pytest.mark.django_db

# Session, user, the tenant ids of a tenant admin, the bounded count, the page, the tenant
# filter, and a few the admin itself makes: anything above this is a query per row.
MOST_QUERIES_PER_LIST = 12


def changelist_queries(client, model) -> int:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.fixture
def staff_admin_of_a(tenant_a, client):
    tenant_a.admin.is_staff = True
    tenant_a.admin.save(update_fields=["is_staff"])
    client.force_login(tenant_a.admin)
    return client


@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda model: model.__name__)
@pytest.mark.parametrize("who", ["operator", "staff_admin_of_a"])
def test_a_list_costs_the_same_queries_with_many_rows(request, tenant_a, tenant_b, model, who):
    client = request.getfixturevalue(who)
    for cast in (tenant_a, tenant_b):
        make_tenant_objects(cast.tenant, cast.viewer, suffix="-0")
    few = changelist_queries(client, model)

    for index in range(1, 16):
        for cast in (tenant_a, tenant_b):
            make_tenant_objects(cast.tenant, cast.viewer, suffix=f"-{index}")
    many = changelist_queries(client, model)

    assert many == few
    assert many <= MOST_QUERIES_PER_LIST


def test_the_count_of_a_list_stops_at_its_limit(operator, tenant_a, monkeypatch):
    from apps.audit.models import AuditEvent
    from apps.tenants.admin_scoping import BoundedCountPaginator

    monkeypatch.setattr(BoundedCountPaginator, "count_limit", 5)
    AuditEvent.objects.bulk_create(
        AuditEvent(tenant=tenant_a.tenant, type="report.exported", ts=tenant_a.tenant.created_at)
        for _ in range(8)
    )

    response = operator.get(reverse("admin:audit_auditevent_changelist"))

    assert response.context["cl"].result_count == 6
