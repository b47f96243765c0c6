from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.accounts.models import User, normalize_email_address
from apps.tenants.models import Role, UserRole


class LoginSerializer(serializers.Serializer[Any]):
    """The OAuth2 password form: ``username`` holds the email address."""

    username = serializers.CharField(
        required=False, help_text="The user's email address (OAuth2 calls it username)."
    )
    email = serializers.CharField(required=False, help_text="Alias of username.")
    password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})
    grant_type = serializers.CharField(
        required=False, help_text="OAuth2 clients send 'password'; nothing else is accepted."
    )

    def validate_grant_type(self, value: str) -> str:
        if value and value != "password":
            raise serializers.ValidationError("Only the 'password' grant is supported.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        login = attrs.get("username") or attrs.get("email")
        if not login:
            raise serializers.ValidationError({"username": ["This field is required."]})
        attrs["login"] = normalize_email_address(login)
        return attrs


class TokenPairSerializer(serializers.Serializer[Any]):
    access_token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    token_type = serializers.CharField(help_text="Always `bearer`.")
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")
    refresh_token = serializers.CharField(
        help_text="Trade at `POST /auth/refresh` for a new pair; single use."
    )


class RefreshTokenSerializer(serializers.Serializer[Any]):
    refresh_token = serializers.CharField(required=False)
    refresh = serializers.CharField(required=False, help_text="Alias of refresh_token.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        token = attrs.get("refresh_token") or attrs.get("refresh")
        if not token:
            raise serializers.ValidationError({"refresh_token": ["This field is required."]})
        return {"refresh_token": token}


class UserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "email", "full_name", "is_superuser", "date_joined"]
        read_only_fields = fields


class RegisterSerializer(serializers.ModelSerializer[User]):
    password = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "password", "date_joined"]
        read_only_fields = ["id", "date_joined"]
        # Uniqueness is checked case-insensitively in validate_email.
        extra_kwargs: ClassVar[dict[str, Any]] = {"email": {"validators": []}}

    def validate_email(self, value: str) -> str:
        email = normalize_email_address(value)
        if User.objects.filter(email=email).exists():
            raise serializers.ValidationError("A user with this email already exists.")
        return email

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        candidate = User(email=attrs["email"], full_name=attrs.get("full_name", ""))
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"password": list(error.messages)}) from error
        return attrs


class MembershipSerializer(serializers.ModelSerializer[UserRole]):
    tenant_id = serializers.IntegerField(read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)

    class Meta:
        model = UserRole
        fields = ["tenant_id", "tenant_name", "tenant_slug", "role"]


class MeSerializer(UserSerializer):
    tenants = MembershipSerializer(source="tenant_roles", many=True, read_only=True)

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "tenants"]
        read_only_fields = fields
