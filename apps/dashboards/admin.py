from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from apps.dashboards.configs import ConfigError, check_panel_config, parse_query
from apps.dashboards.models import Dashboard, Panel, SavedQuery
from apps.tenants.admin_scoping import TenantScopedAdminMixin, TenantScopedInlineMixin


class PanelForm(forms.ModelForm[Panel]):
    """Checks config and query as the API does, so the admin stores nothing it would refuse.

    Unlike the API it does not check that the query's devices belong to the tenant: the
    panel-data endpoint leaves foreign or deleted devices out.
    """

    class Meta:
        model = Panel
        fields = ["title", "type", "x", "y", "w", "h", "config", "query", "saved_query"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        panel_type, config = cleaned.get("type"), cleaned.get("config")
        if panel_type and config is not None:
            try:
                check_panel_config(panel_type, config)
            except ConfigError as error:
                self.add_error("config", f"{error.under('config').path}: {error.message}")
        query = cleaned.get("query")
        if query:
            try:
                parse_query(query)
            except ConfigError as error:
                self.add_error("query", f"{error.under('query').path}: {error.message}")
            if cleaned.get("saved_query") is not None:
                self.add_error("query", "Give either a query or a saved query, not both.")
        return cleaned


class PanelInline(TenantScopedInlineMixin, admin.StackedInline[Panel, Dashboard]):
    model = Panel
    form = PanelForm
    extra = 0
    fields = ["title", "type", ("x", "y", "w", "h"), "config", "query", "saved_query"]
    raw_id_fields = ["saved_query"]


@admin.register(Dashboard)
class DashboardAdmin(TenantScopedAdminMixin, admin.ModelAdmin[Dashboard]):
    """Dashboards and their panels."""

    list_display = ["name", "tenant", "updated_at"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "description", "tenant__name"]
    autocomplete_fields = ["tenant"]
    inlines = [PanelInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # A panel belongs to its dashboard's tenant.
        for panel in formset.save(commit=False):
            panel.tenant_id = panel.dashboard.tenant_id
            panel.save()
        for removed in formset.deleted_objects:
            removed.delete()
        formset.save_m2m()


class SavedQueryForm(forms.ModelForm[SavedQuery]):
    class Meta:
        model = SavedQuery
        fields = ["tenant", "name", "description", "query"]

    def clean_query(self) -> Any:
        query = self.cleaned_data.get("query")
        try:
            parse_query(query)
        except ConfigError as error:
            raise forms.ValidationError(f"{error.under('query').path}: {error.message}") from None
        return query


@admin.register(SavedQuery)
class SavedQueryAdmin(TenantScopedAdminMixin, admin.ModelAdmin[SavedQuery]):
    form = SavedQueryForm
    list_display = ["name", "tenant", "updated_at"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "description", "tenant__name"]
    autocomplete_fields = ["tenant"]
