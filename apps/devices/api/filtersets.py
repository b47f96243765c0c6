from __future__ import annotations

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from apps.devices.models import Device, DeviceProtocol


class DeviceFilterSet(filters.FilterSet):
    q = filters.CharFilter(
        method="search", label="Text in the name, external id or model (case-insensitive)."
    )
    name = filters.CharFilter(lookup_expr="icontains", label="Part of the name.")
    external_id = filters.CharFilter(label="Exact external id (IMEI).")
    model = filters.CharFilter(lookup_expr="iexact", label="Hardware model, e.g. FMC650.")
    protocol = filters.ChoiceFilter(choices=DeviceProtocol.choices)
    is_active = filters.BooleanFilter()
    active = filters.BooleanFilter(field_name="is_active", label="Alias of is_active.")

    class Meta:
        model = Device
        fields = ["q", "name", "external_id", "model", "protocol", "is_active", "active"]

    def search(self, queryset: QuerySet[Device], name: str, value: str) -> QuerySet[Device]:
        return queryset.filter(
            Q(name__icontains=value) | Q(external_id__icontains=value) | Q(model__icontains=value)
        )
