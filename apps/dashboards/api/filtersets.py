from __future__ import annotations

from django_filters import rest_framework as filters

from apps.dashboards.models import Dashboard, Panel, PanelType, SavedQuery


class DashboardFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains", label="Part of the name.")

    class Meta:
        model = Dashboard
        fields = ["name"]


class PanelFilterSet(filters.FilterSet):
    type = filters.ChoiceFilter(choices=PanelType.choices)

    class Meta:
        model = Panel
        fields = ["type"]


class SavedQueryFilterSet(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains", label="Part of the name.")

    class Meta:
        model = SavedQuery
        fields = ["name"]
