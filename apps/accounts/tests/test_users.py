from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.accounts.models import User

pytestmark = pytest.mark.django_db


def test_createsuperuser_noinput_reads_the_email_and_password_from_the_environment(
    monkeypatch,
):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "Ops@Example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-Operator-pass")

    call_command("createsuperuser", "--noinput", verbosity=0)

    user = User.objects.get(email="ops@example.com")
    assert user.is_superuser
    assert user.is_staff
    assert user.check_password("s3cret-Operator-pass")


def test_emails_are_stored_in_lower_case():
    user = User.objects.create_user(" Mixed.Case@Example.COM ", "whatever-pass-1")

    assert user.email == "mixed.case@example.com"
    assert User.objects.get_by_natural_key("MIXED.case@example.com") == user


def test_a_user_needs_an_email():
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user("", "whatever-pass-1")
