"""Dashboards, panels and saved queries through the API: roles, PUT and PATCH, the seed flow."""

from __future__ import annotations

import pytest

from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.tenants.models import Role

from .conftest import DAY, dashboards_url, panels_url, saved_queries_url

pytestmark = pytest.mark.django_db

WRITERS = [Role.ADMIN, Role.MANAGER]


def test_the_seeds_demo_flow_creates_reads_updates_and_deletes(client_for, tenant_a, device):
    client = client_for(tenant_a.manager)

    created = client.post(
        dashboards_url(tenant_a), {"name": "Demo", "description": "Trucks"}, format="json"
    )
    board = created.json()
    panel = client.post(
        panels_url(tenant_a, Dashboard(pk=board["id"])),
        {
            "title": "Speed",
            "type": "timeseries",
            "config": {"unit": "km/h"},
            "query": {"devices": [device.pk], "keys": ["gps.speed"], "last": "last 24 h"},
        },
        format="json",
    ).json()
    read_back = client.get(dashboards_url(tenant_a, board["id"])).json()
    updated = client.patch(dashboards_url(tenant_a, board["id"]), {"name": "Demo 2"}, format="json")
    panel_url = panels_url(tenant_a, Dashboard(pk=board["id"]), panel["id"])
    panel_updated = client.patch(panel_url, {"title": "Speed (km/h)"}, format="json")
    panel_deleted = client.delete(panel_url)
    deleted = client.delete(dashboards_url(tenant_a, board["id"]))

    assert created.status_code == 201
    assert board["tenant_id"] == tenant_a.tenant.pk
    assert [p["title"] for p in read_back["panels"]] == ["Speed"]
    assert read_back["panels"][0]["query"]["last"] == "last 24 h"
    assert updated.json()["name"] == "Demo 2"
    assert panel_updated.json()["title"] == "Speed (km/h)"
    assert (panel_deleted.status_code, deleted.status_code) == (204, 204)
    assert not Dashboard.objects.exists()
    assert not Panel.objects.exists()


class TestRoles:
    @pytest.mark.parametrize("role", list(Role))
    def test_every_member_reads(self, client_for, tenant_a, panel, saved_query, role):
        client = client_for(tenant_a.member(role))
        board = panel.dashboard

        responses = [
            client.get(dashboards_url(tenant_a)),
            client.get(dashboards_url(tenant_a, board.pk)),
            client.get(panels_url(tenant_a, board)),
            client.get(panels_url(tenant_a, board, panel.pk)),
            client.get(panels_url(tenant_a, board, panel.pk, "data")),
            client.get(saved_queries_url(tenant_a)),
            client.get(saved_queries_url(tenant_a, saved_query.pk)),
        ]

        assert [response.status_code for response in responses] == [200] * 7

    @pytest.mark.parametrize("role", WRITERS)
    def test_managers_and_admins_write_everything(self, client_for, tenant_a, device, role):
        client = client_for(tenant_a.member(role))
        query = {"devices": [device.pk], "keys": ["gps.speed"]}

        board = client.post(dashboards_url(tenant_a), {"name": "B"}, format="json").json()
        url = panels_url(tenant_a, Dashboard(pk=board["id"]))
        saved = client.post(
            saved_queries_url(tenant_a), {"name": "Q", "query": query}, format="json"
        ).json()
        panel = client.post(
            url, {"title": "P", "type": "stat", "saved_query_id": saved["id"]}, format="json"
        ).json()
        statuses = [
            client.put(dashboards_url(tenant_a, board["id"]), {"name": "B2"}).status_code,
            client.put(
                f"{url}/{panel['id']}", {"title": "P2", "type": "map"}, format="json"
            ).status_code,
            client.put(
                saved_queries_url(tenant_a, saved["id"]),
                {"name": "Q2", "query": query},
                format="json",
            ).status_code,
            client.delete(f"{url}/{panel['id']}").status_code,
            client.delete(saved_queries_url(tenant_a, saved["id"])).status_code,
            client.delete(dashboards_url(tenant_a, board["id"])).status_code,
        ]

        assert statuses == [200, 200, 200, 204, 204, 204]

    def test_viewers_write_nothing(self, client_for, tenant_a, panel, saved_query):
        client = client_for(tenant_a.viewer)
        board = panel.dashboard
        before = (
            list(Dashboard.objects.values()),
            list(Panel.objects.values()),
            list(SavedQuery.objects.values()),
        )

        responses = [
            client.post(dashboards_url(tenant_a), {"name": "x"}),
            client.put(dashboards_url(tenant_a, board.pk), {"name": "x"}),
            client.patch(dashboards_url(tenant_a, board.pk), {"name": "x"}),
            client.delete(dashboards_url(tenant_a, board.pk)),
            client.post(panels_url(tenant_a, board), {"title": "x", "type": "stat"}),
            client.put(panels_url(tenant_a, board, panel.pk), {"title": "x", "type": "map"}),
            client.patch(panels_url(tenant_a, board, panel.pk), {"title": "x"}),
            client.delete(panels_url(tenant_a, board, panel.pk)),
            client.post(saved_queries_url(tenant_a), {"name": "x"}),
            client.patch(saved_queries_url(tenant_a, saved_query.pk), {"name": "x"}),
            client.delete(saved_queries_url(tenant_a, saved_query.pk)),
        ]

        assert {response.status_code for response in responses} == {403}
        assert before == (
            list(Dashboard.objects.values()),
            list(Panel.objects.values()),
            list(SavedQuery.objects.values()),
        )

    def test_an_outsider_and_the_anonymous_are_refused(
        self, client_for, anonymous, outsider, tenant_a, dashboard
    ):
        outsider_client = client_for(outsider)

        assert outsider_client.get(dashboards_url(tenant_a)).status_code == 403
        assert outsider_client.get(saved_queries_url(tenant_a)).status_code == 403
        assert anonymous.get(dashboards_url(tenant_a)).status_code == 401


class TestPutAndPatch:
    def test_put_replaces_the_dashboard_and_patch_merges_its_layout(
        self, client_for, tenant_a, dashboard
    ):
        client = client_for(tenant_a.admin)
        url = dashboards_url(tenant_a, dashboard.pk)
        client.patch(url, {"description": "Trucks", "layout": {"theme": "dark"}}, format="json")

        merged = client.get(url).json()
        removed = client.patch(url, {"layout": {"cols": None}}, format="json").json()
        replaced = client.put(url, {"name": "Renamed"}, format="json").json()

        assert merged["layout"] == {"cols": 12, "theme": "dark"}
        assert merged["description"] == "Trucks"
        assert removed["layout"] == {"theme": "dark"}
        assert (replaced["name"], replaced["description"], replaced["layout"]) == (
            "Renamed",
            "",
            {},
        )

    def test_put_replaces_a_panel_and_patch_merges_its_config_and_query(
        self, client_for, tenant_a, panel
    ):
        client = client_for(tenant_a.manager)
        url = panels_url(tenant_a, panel.dashboard, panel.pk)

        patched = client.patch(
            url,
            {"x": 3, "config": {"decimals": 1, "legend": None}, "query": {"interval": "5m"}},
            format="json",
        ).json()
        put = client.put(url, {"title": "Plain", "type": "timeseries"}, format="json").json()

        assert patched["x"] == 3
        assert patched["config"] == {"unit": "km/h", "decimals": 1}
        assert patched["query"]["interval"] == "5m"
        assert patched["query"]["keys"] == ["gps.speed"]
        assert (put["title"], put["x"], put["w"], put["config"], put["query"]) == (
            "Plain",
            0,
            6,
            {},
            {},
        )

    def test_patch_swaps_the_panels_own_query_for_a_saved_one(
        self, client_for, tenant_a, panel, saved_query
    ):
        url = panels_url(tenant_a, panel.dashboard, panel.pk)

        response = client_for(tenant_a.manager).patch(
            url, {"query": None, "saved_query_id": saved_query.pk}, format="json"
        )

        assert response.status_code == 200, response.json()
        assert (response.json()["query"], response.json()["saved_query_id"]) == (
            {},
            saved_query.pk,
        )

    def test_put_needs_the_panel_type(self, client_for, tenant_a, panel):
        url = panels_url(tenant_a, panel.dashboard, panel.pk)

        response = client_for(tenant_a.admin).put(url, {"title": "No type"}, format="json")

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["type"]

    def test_patch_merges_a_saved_query_and_replaces_its_device_list(
        self, client_for, tenant_a, saved_query, device
    ):
        client = client_for(tenant_a.admin)
        url = saved_queries_url(tenant_a, saved_query.pk)

        body = client.patch(url, {"query": {"interval": "1h", "agg": ["max"]}}, format="json")

        assert body.json()["query"] == {
            "devices": [device.pk],
            "keys": ["gps.speed"],
            **DAY,
            "interval": "1h",
            "agg": ["max"],
        }


class TestSavedQueries:
    def test_names_are_unique_within_a_tenant_only(
        self, client_for, tenant_a, tenant_b, saved_query, device, foreign
    ):
        body = {"name": "Speed today", "query": {"devices": [device.pk]}}
        foreign_body = {"name": "Speed today", "query": {"devices": [foreign["device"].pk]}}

        again = client_for(tenant_a.admin).post(saved_queries_url(tenant_a), body, format="json")
        elsewhere = client_for(tenant_b.admin).post(
            saved_queries_url(tenant_b), foreign_body, format="json"
        )

        assert again.status_code == 400
        assert list(again.json()["errors"]) == ["name"]
        assert elsewhere.status_code == 201

    def test_one_in_use_by_a_panel_cannot_be_deleted(
        self, client_for, tenant_a, dashboard, saved_query
    ):
        client = client_for(tenant_a.admin)
        client.post(
            panels_url(tenant_a, dashboard),
            {"title": "Now", "type": "stat", "saved_query_id": saved_query.pk},
            format="json",
        )

        response = client.delete(saved_queries_url(tenant_a, saved_query.pk))

        assert response.status_code == 409
        assert response.json()["code"] == "saved_query_in_use"
        assert SavedQuery.objects.filter(pk=saved_query.pk).exists()

    def test_a_query_and_a_saved_query_exclude_each_other(
        self, client_for, tenant_a, dashboard, saved_query, device
    ):
        response = client_for(tenant_a.admin).post(
            panels_url(tenant_a, dashboard),
            {
                "title": "Both",
                "type": "stat",
                "saved_query_id": saved_query.pk,
                "query": {"devices": [device.pk], "keys": ["gps.speed"]},
            },
            format="json",
        )

        assert response.status_code == 400
        assert list(response.json()["errors"]) == ["query"]
        assert not Panel.objects.exists()
