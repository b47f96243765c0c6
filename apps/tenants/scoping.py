"""The one mechanism that decides a request's tenant and what the caller may do in it.

Every tenant-owned API view inherits ``TenantScopedViewMixin``. It resolves the tenant
(``{tenant_id}`` in the path, else the ``X-Tenant-Id`` header, else the caller's only
tenant), checks the caller's role against what the action needs, and narrows querysets
to that tenant. Views never filter by tenant themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from django.db.models import Manager, Model, QuerySet
from rest_framework import exceptions
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.models import User, caller
from apps.tenants.models import Role, Tenant, TenantQuerySet, UserRole
from quantumfleet.api.errors import FieldError
from quantumfleet.api.filters import MAX_ID

_Model = TypeVar("_Model", bound=Model)
_Owned = TypeVar("_Owned", bound=Model)

TENANT_HEADER = "X-Tenant-Id"


@dataclass(frozen=True)
class TenantAccess:
    """The tenant a request acts in and the caller's effective role there."""

    tenant: Tenant
    role: Role


def resolve_tenant_access(request: Request, tenant_id_in_path: str | None) -> TenantAccess:
    """Find the request's tenant and the caller's role in it, or raise a 4xx.

    A tenant the caller has no role in is a 403 whether or not it exists, so ids of other
    tenants cannot be probed. Superusers act as admins in every tenant.
    """
    user = caller(request)
    if tenant_id_in_path is not None:
        return access_to_named_tenant(user, parse_tenant_id(tenant_id_in_path, "tenant_id"))

    header_value = request.headers.get(TENANT_HEADER)
    if header_value is not None and header_value.strip():
        return access_to_named_tenant(user, parse_tenant_id(header_value, TENANT_HEADER))

    memberships = list(UserRole.objects.filter(user=user).select_related("tenant")[:2])
    if len(memberships) == 1:
        membership = memberships[0]
        role = Role.ADMIN if user.is_superuser else Role(membership.role)
        return TenantAccess(tenant=membership.tenant, role=role)
    if memberships or user.is_superuser:
        raise FieldError(
            TENANT_HEADER,
            f"Send the {TENANT_HEADER} header: you have access to several tenants.",
            code="tenant_required",
        )
    raise exceptions.PermissionDenied("You have no role in any tenant.", code="no_tenant")


def parse_tenant_id(raw: str, field: str) -> int:
    try:
        tenant_id = int(raw.strip())
    except ValueError:
        raise FieldError(field, f"A tenant id is an integer from 1 to {MAX_ID}.") from None
    if not 0 < tenant_id <= MAX_ID:
        raise FieldError(field, f"A tenant id is an integer from 1 to {MAX_ID}.")
    return tenant_id


def access_to_named_tenant(user: User, tenant_id: int) -> TenantAccess:
    membership = UserRole.objects.filter(user=user, tenant_id=tenant_id).select_related("tenant")
    found = membership.first()
    if found is not None:
        role = Role.ADMIN if user.is_superuser else Role(found.role)
        return TenantAccess(tenant=found.tenant, role=role)

    if user.is_superuser:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise exceptions.NotFound(
                f"Tenant {tenant_id} does not exist.", code="tenant_not_found"
            )
        return TenantAccess(tenant=tenant, role=Role.ADMIN)

    raise exceptions.PermissionDenied(
        f"You have no role in tenant {tenant_id}.", code="not_a_member"
    )


class TenantRolePermission(BasePermission):
    """Resolves the tenant onto the view and checks the caller's role for the action."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if not isinstance(view, TenantScopedViewMixin):
            raise TypeError(f"{type(view).__name__} must inherit TenantScopedViewMixin.")

        access = resolve_tenant_access(request, view.kwargs.get("tenant_id"))
        view.tenant_access = access
        required = view.required_role(request)
        if not access.role.includes(required):
            raise exceptions.PermissionDenied(
                f"This needs the {required.value} role in tenant {access.tenant.pk}; "
                f"you are {access.role.value}.",
                code="role_required",
            )
        return True


class TenantScopedViewMixin(GenericAPIView[_Model]):
    """Base for API views that act inside one tenant.

    Subclasses set ``read_role`` and ``write_role`` (viewer reads, manager writes by
    default) and may name per-action roles in ``action_roles``. ``get_queryset`` narrows
    the view's ``queryset`` to the tenant; ``tenant`` is the resolved tenant. Put it first
    among the bases, before DRF's generic views and viewsets.
    """

    permission_classes = [IsAuthenticated, TenantRolePermission]
    read_role: ClassVar[Role] = Role.VIEWER
    write_role: ClassVar[Role] = Role.MANAGER
    action_roles: ClassVar[dict[str, Role]] = {}
    # Views under /tenants/{tenant_id}/ set this to False: the path names the tenant.
    tenant_from_header: ClassVar[bool] = True

    tenant_access: TenantAccess

    @property
    def tenant(self) -> Tenant:
        return self.tenant_access.tenant

    @property
    def role(self) -> Role:
        return self.tenant_access.role

    def scoped(self, source: Manager[_Owned] | QuerySet[_Owned]) -> QuerySet[_Owned]:
        """A tenant-owned model's rows, narrowed to the request's tenant."""
        queryset = source.all()
        if not isinstance(queryset, TenantQuerySet):
            raise TypeError(f"{queryset.model.__name__} is not tenant-owned.")
        return queryset.for_tenant(self.tenant)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # An id past a 64-bit key names no row; SQLite cannot even compare one (it raises
        # OverflowError), so it is answered here, after the caller's access is checked.
        for name, value in kwargs.items():
            if isinstance(value, str) and value.isdigit() and int(value) > MAX_ID:
                raise exceptions.NotFound(f"No object has this {name}.", code="not_found")

    def required_role(self, request: Request) -> Role:
        action = getattr(self, "action", None)
        if action in self.action_roles:
            return self.action_roles[action]
        return self.read_role if request.method in SAFE_METHODS else self.write_role

    def get_queryset(self) -> QuerySet[_Model]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            # Schema generation runs without a request tenant.
            return queryset.none()
        if not isinstance(queryset, TenantQuerySet):
            raise TypeError(f"{queryset.model.__name__} is not tenant-owned.")
        return queryset.for_tenant(self.tenant)
