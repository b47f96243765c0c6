"""Login, token refresh, logout and registration (the seed's ``/auth`` routes)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import login_limits, services
from apps.accounts.api.serializers import (
    LoginSerializer,
    MeSerializer,
    RefreshTokenSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserSerializer,
)
from apps.accounts.models import User, caller
from quantumfleet.api.parsers import JSONParser
from quantumfleet.api.throttling import AuthRateThrottle

logger = logging.getLogger(__name__)


class InvalidCredentials(exceptions.APIException):
    # Not AuthenticationFailed: views without authenticators would turn that into a 403.
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "invalid_credentials"
    default_detail = "Incorrect email or password."


class InvalidRefreshToken(InvalidCredentials):
    default_code = "invalid_refresh_token"
    default_detail = "The refresh token is invalid, expired or revoked."


class LoginThrottled(exceptions.Throttled):
    """429 with Retry-After; the same answer whether or not the account exists."""

    default_code = "login_throttled"
    default_detail = "Too many failed logins from this address."
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


class PublicAuthView(APIView):
    """Endpoints reached without a token; a stale Authorization header is ignored.

    Each client address may call them ``API_AUTH_THROTTLE_RATE`` times; the login also
    has its own limits on failures (``apps.accounts.login_limits``).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [AuthRateThrottle]


class LoginView(PublicAuthView):
    @extend_schema(
        request={
            "application/x-www-form-urlencoded": LoginSerializer,
            "application/json": LoginSerializer,
        },
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="Wrong email or password, or inactive user."),
            429: OpenApiResponse(
                description=(
                    "Too many failed logins for this account from this address, or from "
                    "this address; `Retry-After` gives the seconds to wait."
                )
            ),
        },
        summary="Log in with email and password",
        description=(
            "The OAuth2 password flow: form fields `username` (the email) and `password`. "
            "JSON with the same fields is accepted too. After `LOGIN_FAILURES_PER_ACCOUNT` "
            "failures for one account from one address, or `LOGIN_FAILURES_PER_ADDRESS` "
            "from one address, within `LOGIN_FAILURE_WINDOW_SECONDS`, logins are refused "
            "with 429 until the window ends, even with the right password."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        login = serializer.validated_data["login"]
        address = AuthRateThrottle().get_ident(request)
        block = login_limits.check_login_allowed(login, address)
        if block is not None:
            raise LoginThrottled(wait=block.retry_after)

        user = authenticate(
            request._request, username=login, password=serializer.validated_data["password"]
        )
        if not isinstance(user, User):
            logger.info("user.login_failed")
            services.record_failed_login(login, address)
            raise InvalidCredentials()

        login_limits.record_login_success(login, address)
        pair = services.issue_token_pair(user)
        logger.info("user.login", extra={"user_id": user.pk})
        services.record_login(user)
        return Response(TokenPairSerializer(asdict(pair)).data)


class RefreshView(PublicAuthView):
    @extend_schema(
        request=RefreshTokenSerializer,
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="The refresh token is invalid, used or revoked."),
        },
        summary="Trade a refresh token for a new token pair",
        description="Each refresh token works once: the response carries its replacement.",
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            pair = services.refresh_token_pair(serializer.validated_data["refresh_token"])
        except services.InvalidRefreshTokenError as error:
            raise InvalidRefreshToken() from error
        return Response(TokenPairSerializer(asdict(pair)).data)


class LogoutView(PublicAuthView):
    @extend_schema(
        request=RefreshTokenSerializer,
        responses={
            204: OpenApiResponse(description="The refresh token is revoked."),
            401: OpenApiResponse(description="The refresh token is invalid or already revoked."),
        },
        summary="Revoke a refresh token",
        description=(
            "Access tokens already issued stay valid until they expire "
            "(JWT_EXPIRE_MINUTES); keep that lifetime short."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.revoke_refresh_token(serializer.validated_data["refresh_token"])
        except services.InvalidRefreshTokenError as error:
            raise InvalidRefreshToken() from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class RegisterView(PublicAuthView):
    @extend_schema(
        request=RegisterSerializer,
        responses={
            201: UserSerializer,
            403: OpenApiResponse(description="Registration is closed on this server."),
        },
        summary="Create a user",
        description=(
            "The new user belongs to no tenant until a tenant admin grants a role. "
            "Passwords are checked by the configured password validators."
        ),
    )
    def post(self, request: Request) -> Response:
        if not settings.ALLOW_REGISTRATION:
            raise exceptions.PermissionDenied(
                "Registration is closed on this server.", code="registration_closed"
            )
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.register_user(
            email=serializer.validated_data["email"],
            password=serializer.validated_data["password"],
            full_name=serializer.validated_data.get("full_name", ""),
        )
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: MeSerializer}, summary="The caller and their tenant roles")
    def get(self, request: Request) -> Response:
        user = User.objects.prefetch_related("tenant_roles__tenant").get(pk=caller(request).pk)
        return Response(MeSerializer(user).data)
