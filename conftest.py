"""Fixtures shared by every app's tests.

Every test that touches the API gets the same cast: two tenants, each with an admin, a
manager and a viewer, plus an outsider who belongs to no tenant, so that isolation is
asserted everywhere instead of in one file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

# Before Django reads its settings: fast password hashing, DEBUG off, no demo data.
os.environ.setdefault("DJANGO_ENV", "test")

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import User
from apps.tenants.models import Role, Tenant, UserRole

PASSWORD = "Correct-Horse-42"


@dataclass
class TenantCast:
    """A tenant and one user in each role."""

    tenant: Tenant
    admin: User
    manager: User
    viewer: User

    def member(self, role: Role) -> User:
        return {Role.ADMIN: self.admin, Role.MANAGER: self.manager, Role.VIEWER: self.viewer}[role]


def make_cast(slug: str) -> TenantCast:
    tenant = Tenant.objects.create(name=f"Fleet {slug.upper()}", slug=slug)
    users = {}
    for role in Role:
        user = User.objects.create_user(f"{role.value}@{slug}.example.com", PASSWORD)
        UserRole.objects.create(user=user, tenant=tenant, role=role)
        users[role] = user
    return TenantCast(tenant, users[Role.ADMIN], users[Role.MANAGER], users[Role.VIEWER])


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Each test starts with no login failures and no request history counted.

    Only a process-local cache is cleared: clearing a Redis one would flush its database.
    """
    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture
def tenant_a(db: None) -> TenantCast:
    return make_cast("alpha")


@pytest.fixture
def tenant_b(db: None) -> TenantCast:
    return make_cast("bravo")


@pytest.fixture
def outsider(db: None) -> User:
    return User.objects.create_user("outsider@example.com", PASSWORD)


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root@example.com", PASSWORD)


@pytest.fixture
def operator(superuser: User) -> Client:
    """A browser session of a platform superuser in the admin site."""
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """An API client that sends a real JWT for the user, and a tenant header if asked."""

    def make(user: User, tenant: Tenant | int | None = None) -> APIClient:
        client = APIClient()
        headers = {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}
        if tenant is not None:
            headers["HTTP_X_TENANT_ID"] = str(tenant if isinstance(tenant, int) else tenant.pk)
        client.credentials(**headers)
        return client

    return make
