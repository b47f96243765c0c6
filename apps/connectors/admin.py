from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.connectors import services
from apps.connectors.configs import ConfigError, validate_config
from apps.connectors.models import CallStatus, Connector, ConnectorCall, ConnectorLog, Rule
from apps.tenants.admin_scoping import TenantScopedAdminMixin


class ConnectorForm(forms.ModelForm[Connector]):
    """The secret is typed, never shown: left empty, the stored one is kept."""

    new_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="Secret",
        help_text="Leave empty to keep the current secret.",
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the secret")

    class Meta:
        model = Connector
        fields = ["tenant", "name", "kind", "is_active", "config"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        secret = self.instance.secret
        if cleaned.get("clear_secret"):
            secret = ""
        if cleaned.get("new_secret"):
            secret = cleaned["new_secret"]
        try:
            cleaned["config"] = validate_config(
                cleaned.get("kind", ""), cleaned.get("config"), secret
            )
        except ConfigError as error:
            raise forms.ValidationError(f"{error.field}: {error.message}") from None
        cleaned["secret"] = secret
        return cleaned


@admin.register(Connector)
class ConnectorAdmin(TenantScopedAdminMixin, admin.ModelAdmin[Connector]):
    form = ConnectorForm
    list_display = ["name", "tenant", "kind", "is_active", "masked_secret", "last_polled_at"]
    list_filter = ["kind", "is_active", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__name"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["masked_secret", "webhook_token_prefix", "last_polled_at", "created_at"]

    @admin.display(description="secret")
    def masked_secret(self, connector: Connector) -> str:
        return connector.masked_secret or "—"

    def save_model(self, request: HttpRequest, obj: Connector, form: Any, change: bool) -> None:
        obj.secret = form.cleaned_data["secret"]
        token = None
        if obj.kind == "webhook" and not obj.webhook_token_hash:
            token = services.set_webhook_token(obj)
        super().save_model(request, obj, form, change)
        services.record_connector_event(
            "connector.updated" if change else "connector.created", obj, request.user
        )
        if token:
            # The admin's only way to hand over a token once; it is not stored anywhere.
            self.message_user(
                request, f"Webhook URL: /hooks/{token} (shown once).", messages.WARNING
            )


@admin.register(ConnectorCall)
class ConnectorCallAdmin(TenantScopedAdminMixin, admin.ModelAdmin[ConnectorCall]):
    list_display = ["id", "connector", "status", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "tenant"]
    list_select_related = ["connector"]
    search_fields = ["connector__name"]
    readonly_fields = [
        "connector",
        "rule",
        "status",
        "attempts",
        "context",
        "last_error",
        "created_at",
        "finished_at",
    ]
    actions = ["replay"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay the selected finished calls")
    def replay(self, request: HttpRequest, queryset: QuerySet[ConnectorCall]) -> None:
        finished = queryset.filter(
            status__in=[CallStatus.FAILED, CallStatus.DEAD, CallStatus.SUCCEEDED]
        )
        count = 0
        for call in finished:
            services.replay_call(call)
            count += 1
        self.message_user(request, f"{count} call(s) queued again.")


@admin.register(ConnectorLog)
class ConnectorLogAdmin(TenantScopedAdminMixin, admin.ModelAdmin[ConnectorLog]):
    """Every attempt, webhook and poll. Read only; excerpts have their secrets masked."""

    list_display = [
        "created_at",
        "connector",
        "direction",
        "status",
        "attempt",
        "http_status",
        "duration_ms",
        "stored",
    ]
    list_filter = ["direction", "status", "tenant"]
    list_select_related = ["connector"]
    search_fields = ["connector__name", "error"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ConnectorLog | None = None) -> bool:
        return False


@admin.register(Rule)
class RuleAdmin(TenantScopedAdminMixin, admin.ModelAdmin[Rule]):
    list_display = ["name", "tenant", "connector", "path", "operator", "value", "cooldown_seconds"]
    list_filter = ["operator", "is_active", "tenant"]
    list_select_related = ["tenant", "connector"]
    search_fields = ["name", "path"]
    raw_id_fields = ["connector", "device"]
