"""Dashboards, their panels, and saved telemetry queries of a tenant."""

from __future__ import annotations

from django.db import models

from apps.tenants.models import TenantOwnedModel


class Dashboard(TenantOwnedModel):
    """A named page of panels."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    layout = models.JSONField(
        default=dict,
        blank=True,
        help_text="Options of the page for the client that draws it (columns, refresh, theme).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "dashboards"
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["tenant", "name"], name="dashboards_tenant_name")]

    def __str__(self) -> str:
        return self.name


class SavedQuery(TenantOwnedModel):
    """A telemetry query kept under a name, for panels to share.

    ``query`` holds devices, data paths, a time range (``last`` or ``from``/``to``), an
    optional bucket ``interval`` with its aggregates, and a ``limit``; see
    ``apps.dashboards.configs.parse_query``.
    """

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    query = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "saved_queries"
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="saved_queries_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class PanelType(models.TextChoices):
    """What a panel draws; each type accepts its own config keys."""

    TIMESERIES = "timeseries", "Time series"
    STAT = "stat", "Single value"
    LATEST_TABLE = "latest_table", "Latest values table"
    MAP = "map", "Map"
    GAUGE = "gauge", "Gauge"


class Panel(TenantOwnedModel):
    """One panel of a dashboard: where it sits, how it looks, and which query feeds it.

    Its query is either its own (``query``) or a saved one (``saved_query``), never both.
    The tenant is the dashboard's.
    """

    dashboard = models.ForeignKey(Dashboard, on_delete=models.CASCADE, related_name="panels")
    title = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=PanelType.choices)
    # Position and size in grid cells.
    x = models.PositiveSmallIntegerField(default=0)
    y = models.PositiveSmallIntegerField(default=0)
    w = models.PositiveSmallIntegerField(default=6)
    h = models.PositiveSmallIntegerField(default=4)
    config = models.JSONField(default=dict, blank=True)
    query = models.JSONField(default=dict, blank=True)
    saved_query = models.ForeignKey(
        SavedQuery, on_delete=models.PROTECT, null=True, blank=True, related_name="panels"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "dashboard_panels"
        ordering = ["y", "x", "id"]
        indexes = [models.Index(fields=["tenant", "dashboard"], name="dashboard_panels_list")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=PanelType.values), name="dashboard_panels_type_valid"
            )
        ]

    def __str__(self) -> str:
        return self.title
