"""Registering users and issuing, refreshing and revoking their JWTs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import update_last_login
from django.db import transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from apps.accounts import login_limits
from apps.accounts.models import User, normalize_email_address
from apps.audit.models import EventType
from apps.audit.services import record_user_event_after_commit

logger = logging.getLogger(__name__)


class InvalidRefreshTokenError(Exception):
    """The refresh token is malformed, expired, revoked, or its user is gone or inactive."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)


@transaction.atomic
def register_user(*, email: str, password: str, full_name: str = "") -> User:
    """Create a user with no tenant; a tenant admin or superuser grants them roles."""
    user = User.objects.create_user(email=email, password=password, full_name=full_name)
    logger.info("user.registered", extra={"user_id": user.pk})
    return user


def issue_token_pair(user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)
    update_last_login(None, user)  # type: ignore[arg-type]
    return TokenPair(
        access_token=str(refresh.access_token),
        refresh_token=str(refresh),
        expires_in=int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()),
    )


@transaction.atomic
def refresh_token_pair(raw_refresh_token: str) -> TokenPair:
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    refresh = parse_refresh_token(raw_refresh_token)
    user_id = refresh.payload.get("user_id")
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None:
        raise InvalidRefreshTokenError("The token's user no longer exists or is inactive.")
    refresh.blacklist()
    return issue_token_pair(user)


@transaction.atomic
def revoke_refresh_token(raw_refresh_token: str) -> None:
    """Log out: the refresh token can no longer be used."""
    refresh = parse_refresh_token(raw_refresh_token)
    refresh.blacklist()
    user_id = refresh.payload.get("user_id")
    record_user_event_after_commit(
        EventType.USER_LOGOUT, user_id=int(user_id) if user_id is not None else None
    )


def record_login(user: User) -> None:
    """Audit a successful login (it opens the user's session in each of their tenants)."""
    record_user_event_after_commit(EventType.USER_LOGIN, user_id=user.pk)


def record_failed_login(login: str, address: str) -> None:
    """Count a refused login against its limits and audit it (``login_limits``).

    The event is under the user the email names if there is one. The attempted email is
    kept so that guessing at unknown accounts shows too; the password never is.
    """
    email = normalize_email_address(login)
    user_id = User.objects.filter(email=email).values_list("pk", flat=True).first()
    login_limits.record_login_failure(email, address, user_id)


def parse_refresh_token(raw_refresh_token: str) -> RefreshToken:
    try:
        return RefreshToken(raw_refresh_token)  # type: ignore[arg-type]
    except TokenError as error:
        raise InvalidRefreshTokenError(str(error)) from error
