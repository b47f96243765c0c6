from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.accounts.models import User
from apps.tenants.models import Role, Tenant, UserRole


class TenantSerializer(serializers.ModelSerializer[Tenant]):
    """A tenant, with the caller's role in it (``admin`` for superusers)."""

    slug = serializers.SlugField(
        max_length=100,
        required=False,
        help_text="Unique short name; derived from the name when omitted.",
    )
    role = serializers.SerializerMethodField(help_text="The caller's role in this tenant.")

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "created_at", "role"]
        read_only_fields = ["id", "created_at", "role"]

    def get_role(self, tenant: Tenant) -> str | None:
        if self.context.get("caller_is_superuser"):
            return Role.ADMIN.value
        roles: dict[int, str] = self.context.get("roles_by_tenant", {})
        return roles.get(tenant.pk)

    def validate_slug(self, value: str) -> str:
        taken = Tenant.objects.filter(slug=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("A tenant with this slug already exists.")
        return value


class TenantCreateSerializer(TenantSerializer):
    admin_user_id = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True),
        required=False,
        write_only=True,
        help_text="A user to make the tenant's first admin.",
    )

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "admin_user_id"]


class UserRoleSerializer(serializers.ModelSerializer[UserRole]):
    """One membership: a user's role in a tenant."""

    user_id = serializers.IntegerField(read_only=True)
    tenant_id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)

    class Meta:
        model = UserRole
        fields = ["user_id", "tenant_id", "email", "role", "created_at", "updated_at"]
        read_only_fields = fields


def role_from_path(value: str) -> Role:
    """Parse the ``{role}`` path segment, raising a 400 that names it."""
    try:
        return Role(value)
    except ValueError:
        choices = ", ".join(Role.values)
        raise serializers.ValidationError(
            {"role": [f"Unknown role {value!r}; use one of: {choices}."]}
        ) from None


def roles_by_tenant_for(user: Any) -> dict[int, str]:
    return dict(UserRole.objects.filter(user=user).values_list("tenant_id", "role"))
