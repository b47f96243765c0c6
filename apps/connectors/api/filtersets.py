from __future__ import annotations

from django_filters import rest_framework as filters

from apps.connectors.models import (
    CallStatus,
    Connector,
    ConnectorCall,
    ConnectorKind,
    ConnectorLog,
    Direction,
    LogStatus,
    Rule,
)
from quantumfleet.api.filters import IdFilter, UtcIsoDateTimeFilter


class ConnectorFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains", label="Part of the name.")
    kind = filters.ChoiceFilter(choices=ConnectorKind.choices)
    is_active = filters.BooleanFilter()

    class Meta:
        model = Connector
        fields = ["name", "kind", "is_active"]


class ConnectorCallFilterSet(filters.FilterSet):
    status = filters.ChoiceFilter(choices=CallStatus.choices)
    rule_id = IdFilter()

    class Meta:
        model = ConnectorCall
        fields = ["status", "rule_id"]


class ConnectorLogFilterSet(filters.FilterSet):
    direction = filters.ChoiceFilter(choices=Direction.choices)
    status = filters.ChoiceFilter(choices=LogStatus.choices)
    call_id = IdFilter()
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = ConnectorLog
        fields = ["direction", "status", "call_id", "since"]


class RuleFilterSet(filters.FilterSet):
    connector_id = IdFilter()
    device_id = IdFilter()
    is_active = filters.BooleanFilter()

    class Meta:
        model = Rule
        fields = ["connector_id", "device_id", "is_active"]
