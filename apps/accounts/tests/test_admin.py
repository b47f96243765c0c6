from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.tenants.models import Role, UserRole

pytestmark = pytest.mark.django_db


def test_operators_create_users_by_email_with_a_tenant_role(operator, tenant_a):
    response = operator.post(
        "/admin/accounts/user/add/",
        {
            "email": "New.Operator@Example.com",
            "password1": "Op3rator-secret",
            "password2": "Op3rator-secret",
            "usable_password": "true",
            "tenant_roles-TOTAL_FORMS": "1",
            "tenant_roles-INITIAL_FORMS": "0",
            "tenant_roles-0-tenant": str(tenant_a.tenant.pk),
            "tenant_roles-0-role": "viewer",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new.operator@example.com")
    assert user.check_password("Op3rator-secret")
    assert UserRole.objects.get(user=user).role == Role.VIEWER


def test_the_admin_login_page_asks_for_an_email(superuser):
    page = Client().get("/admin/login/").content.decode()

    assert "Email" in page
