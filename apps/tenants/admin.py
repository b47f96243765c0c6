from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from apps.accounts.models import User
from apps.telemetry import limits
from apps.tenants.admin_scoping import TenantScopedAdminMixin, TenantScopedInlineMixin
from apps.tenants.limits import LIMIT_FIELDS, effective_limits
from apps.tenants.models import Tenant, UserRole


def shown(limit: int) -> str:
    return "no limit" if limit == 0 else f"{limit:,}"


class MembershipInline(TenantScopedInlineMixin, admin.TabularInline[UserRole, Tenant]):
    """Members of a tenant, on the tenant page."""

    model = UserRole
    parent_tenant_field = "id"
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    verbose_name = "member"
    verbose_name_plural = "members (user_roles)"


class UserMembershipInline(admin.TabularInline[UserRole, User]):
    """Tenants of a user, on the user page."""

    model = UserRole
    fk_name = "user"
    extra = 0
    autocomplete_fields = ["tenant"]
    fields = ["tenant", "role", "created_at"]
    readonly_fields = ["created_at"]
    verbose_name = "tenant role"
    verbose_name_plural = "tenant roles (user_roles)"


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin[Tenant]):
    """Tenants; a tenant admin sees and edits only theirs. Only operators add or delete."""

    tenant_field = "id"
    tenant_admins_may_add = False
    tenant_admins_may_delete = False
    list_display = ["name", "slug", "id", "member_count", "device_count", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "limits_in_use"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # Limits protect the platform from its tenants: only operators set them.
        if not request.user.is_superuser:
            fields += list(LIMIT_FIELDS)
        return fields

    @admin.display(description="limits in use")
    def limits_in_use(self, tenant: Tenant) -> str:
        """What the tenant may send and keep, what it uses, and what was refused lately."""
        if not tenant.pk:
            return "—"
        effective = effective_limits(tenant)
        limiter = limits.limiter()
        stored = limits.stored_points_by_tenant([tenant.pk])[tenant.pk]
        this_minute = limiter.tenant_points_this_minute(tenant.pk)
        refused = limiter.refused_last_hour(tenant.pk)
        lines = [
            f"devices: {tenant.devices_device_set.count():,} of {shown(effective.max_devices)}",
            f"stored points: {stored:,} of {shown(effective.max_stored_points)}",
            f"points this minute: {'unknown' if this_minute is None else f'{this_minute:,}'} "
            f"of {shown(effective.tenant_points_per_minute)} "
            f"({shown(effective.device_points_per_minute)} per device)",
            "refused in the last hour: "
            + (
                ", ".join(f"{reason} {count:,}" for reason, count in refused.items())
                if refused
                else "unknown (counters unreachable)"
            ),
        ]
        if not limits.enforced():
            lines.append("rate limits and the stored-points quota are switched off")
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        tenants: QuerySet[Tenant] = super().get_queryset(request)
        return (
            tenants.annotate(
                members=Count("user_roles", distinct=True),
                devices=Count("devices_device", distinct=True),
            )
            # Grouped queries leave Meta.ordering out; pages and autocomplete need one.
            .order_by("name", "id")
        )

    @admin.display(description="members", ordering="members")
    def member_count(self, tenant: Tenant) -> int:
        return getattr(tenant, "members", 0)

    @admin.display(description="devices", ordering="devices")
    def device_count(self, tenant: Tenant) -> int:
        return getattr(tenant, "devices", 0)


@admin.register(UserRole)
class UserRoleAdmin(TenantScopedAdminMixin, admin.ModelAdmin[UserRole]):
    list_display = ["user", "tenant", "role", "created_at", "updated_at"]
    list_filter = ["role", "tenant"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__email", "tenant__name", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]
    readonly_fields = ["created_at", "updated_at"]
