"""Tenants and the roles of their users (the seed's ``/tenants`` routes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, mixins, status, viewsets
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User, caller
from apps.tenants import services
from apps.tenants.api.serializers import (
    TenantCreateSerializer,
    TenantSerializer,
    UserRoleSerializer,
    role_from_path,
    roles_by_tenant_for,
)
from apps.tenants.models import Role, Tenant, UserRole
from apps.tenants.scoping import TenantScopedViewMixin


class IsSuperuser(BasePermission):
    message = "Only platform superusers can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_superuser)


class TenantViewSet(
    TenantScopedViewMixin[Tenant],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Tenant],
):
    """Tenants the caller belongs to; superusers see and create all of them."""

    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    lookup_url_kwarg = "tenant_id"
    lookup_value_regex = r"\d+"
    tenant_from_header = False
    write_role = Role.ADMIN
    filter_backends: list[Any] = []

    def get_permissions(self) -> Sequence[Any]:
        if self.action == "list":
            return [IsAuthenticated()]
        if self.action == "create":
            return [IsAuthenticated(), IsSuperuser()]
        return super().get_permissions()

    def get_queryset(self) -> QuerySet[Tenant]:
        tenants = Tenant.objects.order_by("name", "id")
        if getattr(self, "swagger_fake_view", False):
            return tenants
        user = caller(self.request)
        return tenants if user.is_superuser else tenants.filter(user_roles__user=user)

    def get_object(self) -> Tenant:
        return self.tenant

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        user = self.request.user
        if isinstance(user, User):
            context["caller_is_superuser"] = user.is_superuser
            context["roles_by_tenant"] = roles_by_tenant_for(user)
        return context

    @extend_schema(
        request=TenantCreateSerializer,
        responses={201: TenantSerializer},
        summary="Create a tenant (superusers only)",
    )
    def create(self, request: Request) -> Response:
        serializer = TenantCreateSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        tenant = services.create_tenant(
            name=serializer.validated_data["name"],
            slug=serializer.validated_data.get("slug", ""),
            first_admin=serializer.validated_data.get("admin_user_id"),
        )
        return Response(
            TenantSerializer(tenant, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )


class TenantMemberListView(TenantScopedViewMixin[UserRole], generics.ListAPIView[UserRole]):
    """Everyone who holds a role in the tenant (managers and admins)."""

    queryset = UserRole.objects.select_related("user").order_by("user__email")
    serializer_class = UserRoleSerializer
    tenant_from_header = False
    read_role = Role.MANAGER
    filter_backends: list[Any] = []


class UserRoleListView(TenantScopedViewMixin[UserRole], generics.ListAPIView[UserRole]):
    """The roles a user holds in the tenant: a list with at most one entry.

    Admins can read anyone's roles; other members only their own.
    """

    queryset = UserRole.objects.select_related("user")
    serializer_class = UserRoleSerializer
    tenant_from_header = False
    pagination_class = None
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[UserRole]:
        return super().get_queryset().filter(user_id=self.kwargs["user_id"])

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if self.role != Role.ADMIN and int(self.kwargs["user_id"]) != request.user.pk:
            raise exceptions.PermissionDenied(
                "Only tenant admins can read other users' roles.", code="role_required"
            )
        return super().list(request, *args, **kwargs)


class UserRoleDetailView(TenantScopedViewMixin[UserRole], generics.GenericAPIView[UserRole]):
    """Grant or revoke one role of a user in the tenant (tenant admins).

    KNOWN LIMITATION: users are named by id, as in the original API, and a grant answers
    with the user's email, so a tenant admin can learn the email behind any user id by
    granting it a role (the grant is on the tenant's audit trail). Inviting by email
    would close this; it changes the API, so it waits for the clients to move.
    """

    queryset = UserRole.objects.all()
    serializer_class = UserRoleSerializer
    tenant_from_header = False
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def target_user(self) -> User:
        return get_object_or_404(User, pk=self.kwargs["user_id"], is_active=True)

    @extend_schema(
        request=None,
        responses={
            200: UserRoleSerializer,
            201: UserRoleSerializer,
            409: OpenApiResponse(description="The tenant's last admin cannot be demoted."),
        },
        summary="Give the user this role in the tenant",
        description=(
            "A user holds one role per tenant: granting a role replaces the previous one. "
            "201 when the user was not a member, 200 when their role changed. Demoting the "
            "tenant's last admin is refused with 409."
        ),
    )
    def post(self, request: Request, tenant_id: int, user_id: int, role: str) -> Response:
        wanted = role_from_path(role)
        user = self.target_user()
        try:
            membership, created = services.grant_role(
                tenant=self.tenant, user=user, role=wanted, actor_id=request.user.pk
            )
        except services.LastAdminError as error:
            raise LastAdminConflict(str(error)) from error
        return Response(
            UserRoleSerializer(membership).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="The role was removed."),
            409: OpenApiResponse(description="The tenant's last admin cannot be removed."),
        },
        summary="Remove the user's role from the tenant",
        description="404 when the user does not hold this role; 409 for the last admin.",
    )
    def delete(self, request: Request, tenant_id: int, user_id: int, role: str) -> Response:
        wanted = role_from_path(role)
        user = self.target_user()
        try:
            services.revoke_role(
                tenant=self.tenant, user=user, role=wanted, actor_id=request.user.pk
            )
        except services.RoleNotHeldError as error:
            raise exceptions.NotFound(str(error), code="role_not_held") from error
        except services.LastAdminError as error:
            raise LastAdminConflict(str(error)) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class LastAdminConflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "last_admin"
    default_detail = "The tenant must keep at least one admin."
