"""Every dashboard route, tried by every role of one tenant against the other's objects."""

from __future__ import annotations

from typing import Any

import pytest

from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

FOREIGN_ROUTES = [
    ("get", "dashboards/{dashboard}", None),
    ("put", "dashboards/{dashboard}", {"name": "Hijacked"}),
    ("patch", "dashboards/{dashboard}", {"name": "Hijacked"}),
    ("delete", "dashboards/{dashboard}", None),
    ("get", "dashboards/{dashboard}/panels", None),
    ("post", "dashboards/{dashboard}/panels", {"title": "Planted", "type": "map"}),
    ("get", "dashboards/{dashboard}/panels/{panel}", None),
    ("put", "dashboards/{dashboard}/panels/{panel}", {"title": "Hijacked", "type": "map"}),
    ("patch", "dashboards/{dashboard}/panels/{panel}", {"title": "Hijacked"}),
    ("delete", "dashboards/{dashboard}/panels/{panel}", None),
    ("get", "dashboards/{dashboard}/panels/{panel}/data", None),
    ("get", "saved-queries/{saved_query}", None),
    ("put", "saved-queries/{saved_query}", {"name": "Hijacked", "query": {"devices": [1]}}),
    ("patch", "saved-queries/{saved_query}", {"name": "Hijacked"}),
    ("delete", "saved-queries/{saved_query}", None),
]


def snapshot() -> tuple[list[Any], ...]:
    return (
        list(Dashboard.objects.values()),
        list(Panel.objects.values()),
        list(SavedQuery.objects.values()),
    )


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("method", "path", "body"), FOREIGN_ROUTES)
def test_another_tenants_objects_are_404_and_untouched(
    client_for, tenant_a, foreign, role, method, path, body
):
    before = snapshot()
    url = f"/tenants/{tenant_a.tenant.pk}/" + path.format(
        dashboard=foreign["dashboard"].pk,
        panel=foreign["panel"].pk,
        saved_query=foreign["saved_query"].pk,
    )

    response = getattr(client_for(tenant_a.member(role)), method)(url, body, format="json")

    # Viewers are refused writes before the lookup (403); nobody learns the object exists.
    if role == Role.VIEWER and method != "get":
        assert response.status_code == 403
    else:
        assert response.status_code == 404
    assert "Bravo" not in response.content.decode()
    assert snapshot() == before


@pytest.mark.parametrize("role", list(Role))
def test_another_tenants_objects_never_appear_in_lists(client_for, tenant_a, foreign, role):
    client = client_for(tenant_a.member(role))

    boards = client.get(f"/tenants/{tenant_a.tenant.pk}/dashboards")
    queries = client.get(f"/tenants/{tenant_a.tenant.pk}/saved-queries")

    assert boards.json() == queries.json() == []


@pytest.mark.parametrize("role", list(Role))
def test_naming_the_other_tenant_in_the_path_is_forbidden(
    client_for, tenant_a, tenant_b, foreign, role
):
    client = client_for(tenant_a.member(role))
    base = f"/tenants/{tenant_b.tenant.pk}"

    responses = [
        client.get(f"{base}/dashboards"),
        client.get(f"{base}/dashboards/{foreign['dashboard'].pk}"),
        client.post(f"{base}/dashboards", {"name": "Planted"}, format="json"),
        client.get(f"{base}/saved-queries"),
    ]

    assert [response.status_code for response in responses] == [403] * 4
    assert not Dashboard.objects.filter(name="Planted").exists()


def test_a_panel_cannot_use_another_tenants_saved_query(client_for, tenant_a, dashboard, foreign):
    response = client_for(tenant_a.admin).post(
        f"/tenants/{tenant_a.tenant.pk}/dashboards/{dashboard.pk}/panels",
        {"title": "Sneaky", "type": "stat", "saved_query_id": foreign["saved_query"].pk},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["saved_query_id"]
    assert "Bravo" not in response.content.decode()


def test_a_panel_of_another_dashboard_is_404_under_this_one(client_for, tenant_a, panel):
    other = Dashboard.objects.create(tenant=tenant_a.tenant, name="Other")

    response = client_for(tenant_a.viewer).get(
        f"/tenants/{tenant_a.tenant.pk}/dashboards/{other.pk}/panels/{panel.pk}"
    )

    assert response.status_code == 404
