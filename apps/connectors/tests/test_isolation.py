"""Every connector route, tried by every role of one tenant against the other's objects."""

from __future__ import annotations

import pytest

from apps.connectors import services
from apps.connectors.models import Connector, ConnectorCall, ConnectorLog, Rule, RuleOperator
from apps.connectors.tests.conftest import make_outbound
from apps.tenants.models import Role

pytestmark = pytest.mark.django_db

FOREIGN_ROUTES = [
    ("get", "/connectors/{id}", None),
    ("put", "/connectors/{id}", {"name": "Hijacked", "kind": "outbound_http", "config": {}}),
    ("patch", "/connectors/{id}", {"name": "Hijacked"}),
    ("delete", "/connectors/{id}", None),
    ("post", "/connectors/{id}/call", {}),
    ("post", "/connectors/{id}/rotate-token", None),
    ("get", "/connectors/{id}/calls", None),
    ("get", "/connectors/{id}/calls/{call_id}", None),
    ("post", "/connectors/{id}/calls/{call_id}/replay", None),
    ("get", "/connectors/{id}/logs", None),
    ("get", "/connectors/{id}/logs/{log_id}", None),
    ("get", "/rules/{rule_id}", None),
    ("patch", "/rules/{rule_id}", {"name": "Hijacked"}),
    ("delete", "/rules/{rule_id}", None),
]


@pytest.fixture
def foreign(tenant_b):
    connector = make_outbound(tenant_b.tenant, "https://bravo.example.com/hook", name="bravo")
    call, log = services.queue_call(connector, services.call_context(connector))
    ConnectorCall.objects.filter(pk=call.pk).update(status="dead")
    rule = Rule.objects.create(
        tenant=tenant_b.tenant,
        name="bravo rule",
        connector=connector,
        path="speed",
        operator=RuleOperator.GT,
        value=1,
    )
    return connector, call, log, rule


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("method", "path", "body"), FOREIGN_ROUTES)
def test_another_tenants_connector_is_404_and_untouched(
    client_for, tenant_a, foreign, role, method, path, body
):
    connector, call, log, rule = foreign
    before = (
        Connector.objects.values().get(pk=connector.pk),
        ConnectorCall.objects.values().get(pk=call.pk),
        Rule.objects.values().get(pk=rule.pk),
        ConnectorLog.objects.count(),
    )
    url = path.format(id=connector.pk, call_id=call.pk, log_id=log.pk, rule_id=rule.pk)

    response = getattr(client_for(tenant_a.member(role)), method)(url, body, format="json")

    # A viewer is refused writes before any lookup (403); nobody gets past a 404 otherwise.
    assert response.status_code in (403, 404)
    if role != Role.VIEWER or method == "get":
        assert response.status_code == 404
    assert before == (
        Connector.objects.values().get(pk=connector.pk),
        ConnectorCall.objects.values().get(pk=call.pk),
        Rule.objects.values().get(pk=rule.pk),
        ConnectorLog.objects.count(),
    )


def test_lists_show_only_the_tenants_own_rows(client_for, tenant_a, tenant_b, foreign):
    own = make_outbound(tenant_a.tenant, "https://alpha.example.com/hook", name="alpha")
    client = client_for(tenant_a.viewer)

    assert [row["id"] for row in client.get("/connectors").json()] == [own.pk]
    assert client.get("/rules").json() == []


def test_outsiders_are_refused(client_for, outsider, tenant_b, foreign):
    response = client_for(outsider).get("/connectors")

    assert response.status_code == 403
