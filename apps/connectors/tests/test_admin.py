"""The operators' pages: secrets masked, calls replayable."""

from __future__ import annotations

import pytest

from apps.connectors.models import CallStatus, ConnectorCall
from apps.connectors.services import call_context, queue_call
from apps.connectors.tests.conftest import make_outbound

pytestmark = pytest.mark.django_db

SECRET = "admin-page-must-not-show-this"


def test_the_secret_is_masked_in_the_list_and_the_form(operator, tenant_a):
    connector = make_outbound(
        tenant_a.tenant, "https://ops.example.com/x", auth="bearer", secret=SECRET
    )

    listing = operator.get("/admin/connectors/connector/")
    form = operator.get(f"/admin/connectors/connector/{connector.pk}/change/")

    assert listing.status_code == form.status_code == 200
    assert SECRET not in listing.content.decode()
    assert SECRET not in form.content.decode()
    assert "••••••" in listing.content.decode()


def test_saving_the_form_without_a_secret_keeps_it(operator, tenant_a):
    connector = make_outbound(
        tenant_a.tenant, "https://ops.example.com/x", auth="bearer", secret=SECRET
    )

    response = operator.post(
        f"/admin/connectors/connector/{connector.pk}/change/",
        {
            "tenant": tenant_a.tenant.pk,
            "name": "renamed",
            "kind": "outbound_http",
            "is_active": "on",
            "config": '{"url": "https://ops.example.com/y", "auth": "bearer"}',
            "new_secret": "",
        },
    )

    assert response.status_code == 302
    connector.refresh_from_db()
    assert (connector.name, connector.secret) == ("renamed", SECRET)
    assert connector.config["url"] == "https://ops.example.com/y"


def test_a_dead_call_is_replayed_from_the_admin(
    operator, tenant_a, target, django_capture_on_commit_callbacks
):
    connector = make_outbound(tenant_a.tenant, target.url("/back"))
    call, _ = queue_call(connector, call_context(connector))
    ConnectorCall.objects.filter(pk=call.pk).update(status=CallStatus.DEAD)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(
            "/admin/connectors/connectorcall/",
            {"action": "replay", "_selected_action": [call.pk]},
        )

    assert response.status_code == 302
    assert ConnectorCall.objects.get(pk=call.pk).status == CallStatus.SUCCEEDED
