"""Tenant scoping of the Django admin: what a staff user sees, picks and may change there.

Platform superusers see every tenant. Any other staff user works in the admin as a tenant
admin: every tenant-owned page lists, opens, changes and deletes only the rows of tenants
where they hold the ``admin`` role, and every foreign-key choice offers only those
tenants' rows. Their tenant role, not Django's model permissions, decides what they may
do: a staff user with no admin role anywhere sees no tenant-owned page at all.

The mixin also keeps lists fast on large tables: its paginator counts at most a bounded
number of rows, and the "N total" count of unfiltered rows is off.

Each tenant-owned ModelAdmin inherits ``TenantScopedAdminMixin`` (before ``ModelAdmin``);
inlines inherit ``TenantScopedInlineMixin``. The admin's own lookups (the change page,
delete, history, autocomplete, raw-id pop-ups, list filters) go through ``get_queryset``,
so an object of another tenant is never found: Django answers with a redirect to the
admin index ("does not exist"), whatever the object's id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from apps.tenants.models import Role, Tenant, UserRole

if TYPE_CHECKING:
    from django.contrib.admin.options import BaseModelAdmin

    _Base = BaseModelAdmin[Any]
else:
    _Base = object

# Where the tenant ids a request may act on are kept for the rest of that request.
_CACHE_ATTRIBUTE = "_admin_tenant_ids"


def admin_tenant_ids(request: HttpRequest) -> frozenset[int] | None:
    """Ids of the tenants the request's user administers; None for a superuser (all).

    Read once per request: every list, form field and permission check asks.
    """
    if hasattr(request, _CACHE_ATTRIBUTE):
        cached: frozenset[int] | None = getattr(request, _CACHE_ATTRIBUTE)
        return cached

    user = request.user
    ids: frozenset[int] | None
    if not (user.is_active and user.is_staff):
        ids = frozenset()
    elif user.is_superuser:
        ids = None
    else:
        ids = frozenset(
            UserRole.objects.filter(user_id=user.pk, role=Role.ADMIN).values_list(
                "tenant_id", flat=True
            )
        )
    setattr(request, _CACHE_ATTRIBUTE, ids)
    return ids


def scope_to_tenants(
    queryset: QuerySet[Any], tenant_ids: frozenset[int] | None, tenant_field: str
) -> QuerySet[Any]:
    """``queryset`` narrowed to rows whose ``tenant_field`` is one of ``tenant_ids``."""
    if tenant_ids is None:
        return queryset
    return queryset.filter(**{f"{tenant_field}__in": tenant_ids})


def tenant_field_of(model: type[models.Model]) -> str | None:
    """The field that names a model's tenant (``id`` for Tenant itself), or None."""
    if model is Tenant:
        return "id"
    try:
        field = model._meta.get_field("tenant")
    except FieldDoesNotExist:
        return None
    if isinstance(field, models.ForeignKey) and field.related_model is Tenant:
        return "tenant_id"
    return None


def choices_for(request: HttpRequest, related_model: type[models.Model]) -> QuerySet[Any] | None:
    """The rows of ``related_model`` a foreign key may point to, or None to leave it be."""
    tenant_ids = admin_tenant_ids(request)
    if tenant_ids is None:
        return None
    field = tenant_field_of(related_model)
    if field is not None:
        return scope_to_tenants(related_model._default_manager.all(), tenant_ids, field)
    if related_model is get_user_model():
        # Tenant admins pick among the members of their tenants; adding someone from
        # outside is the platform operator's job (or the roles API's, by user id).
        return related_model._default_manager.filter(
            tenant_roles__tenant_id__in=tenant_ids
        ).distinct()
    return None


class TenantListFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user may see (one small query)."""

    title = "tenant"
    parameter_name = "tenant__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        tenants = scope_to_tenants(Tenant.objects.all(), admin_tenant_ids(request), "id")
        return [(tenant.pk, tenant.name) for tenant in tenants.only("id", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        try:
            tenant_id = int(value)
        except ValueError:
            return queryset.none()
        return queryset.filter(tenant_id=tenant_id)


class BoundedCountPaginator(Paginator[Any]):
    """A changelist paginator whose count stops at ``count_limit`` matches.

    Counting every row of a large table (audit events, connector logs, commands) costs
    more than the page shown; past the limit the list says ``count_limit + 1`` results and
    its last page link stops there, while filters and search still reach every row.
    """

    count_limit = 10_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            # COUNT over a LIMIT subquery: the database stops reading at the limit.
            return object_list.order_by()[: self.count_limit + 1].count()
        return len(object_list)


class TenantScopedAdminMixin(_Base):
    """Narrows a tenant-owned ModelAdmin to the tenants the staff user administers.

    ``tenant_field`` names the tenant key (``id`` on the Tenant admin). Tenant admins may
    add and delete unless ``tenant_admins_may_add`` / ``tenant_admins_may_delete`` say no;
    an admin that forbids an action for everyone (read-only pages) still does.
    """

    tenant_field: ClassVar[str] = "tenant_id"
    tenant_admins_may_add: ClassVar[bool] = True
    tenant_admins_may_delete: ClassVar[bool] = True
    # Lists never count a whole table: see BoundedCountPaginator.
    paginator: type[Paginator[Any]] = BoundedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        return scope_to_tenants(queryset, admin_tenant_ids(request), self.tenant_field)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # Django's related filter lists every tenant's name; this one lists the user's.
        filters = super().get_list_filter(request)  # type: ignore[misc]
        return [TenantListFilter if entry == "tenant" else entry for entry in filters]

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if "queryset" not in kwargs:
            choices = choices_for(request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_autocomplete_fields(self, request: HttpRequest) -> Any:
        fields = super().get_autocomplete_fields(request)
        if admin_tenant_ids(request) is None:
            return fields
        # Users have no tenant-scoped admin page to search: tenant admins get a select.
        user_fields = {
            field.name
            for field in self.model._meta.get_fields()
            if getattr(field, "related_model", None) is get_user_model()
        }
        return [name for name in fields if name not in user_fields]

    def has_module_permission(self, request: HttpRequest) -> bool:
        tenant_ids = admin_tenant_ids(request)
        if tenant_ids is None:
            return super().has_module_permission(request)
        return bool(tenant_ids)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.tenant_field)
        return super().has_view_permission(request, obj) if answer is None else answer

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.tenant_field)
        return super().has_change_permission(request, obj) if answer is None else answer

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        answer = tenant_admin_answer(request, None, self.tenant_field)
        if answer is None:
            return super().has_add_permission(request, *args)
        return answer and self.tenant_admins_may_add

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.tenant_field)
        if answer is None:
            return super().has_delete_permission(request, obj)
        return answer and self.tenant_admins_may_delete


class TenantScopedInlineMixin(_Base):
    """Inlines of a tenant-owned page: the same rule, judged on the parent object."""

    parent_tenant_field: ClassVar[str] = "tenant_id"

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if "queryset" not in kwargs:
            choices = choices_for(request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_autocomplete_fields(self, request: HttpRequest) -> Any:
        fields = super().get_autocomplete_fields(request)
        return fields if admin_tenant_ids(request) is None else []

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.parent_tenant_field)
        return super().has_view_permission(request, obj) if answer is None else answer

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.parent_tenant_field)
        return super().has_change_permission(request, obj) if answer is None else answer

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.parent_tenant_field)
        if answer is None:
            return super().has_add_permission(request, obj)  # type: ignore[call-arg]
        return answer

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        answer = tenant_admin_answer(request, obj, self.parent_tenant_field)
        return super().has_delete_permission(request, obj) if answer is None else answer


def tenant_admin_answer(request: HttpRequest, obj: Any, tenant_field: str) -> bool | None:
    """None for a superuser (Django decides); otherwise whether a tenant admin may act.

    Without an object, whether they administer any tenant; with one, whether the object's
    tenant is among theirs.
    """
    tenant_ids = admin_tenant_ids(request)
    if tenant_ids is None:
        return None
    if not tenant_ids:
        return False
    if obj is None:
        return True
    tenant_id = obj.pk if tenant_field == "id" else getattr(obj, tenant_field, None)
    return tenant_id in tenant_ids
