"""State changes of tenants and memberships, one transaction each."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from apps.accounts.models import User
from apps.audit.models import EventType
from apps.audit.services import record_event_after_commit
from apps.tenants.models import Role, Tenant, UserRole


class LastAdminError(Exception):
    """Raised when a change would leave a tenant without any admin."""


class RoleNotHeldError(Exception):
    """Raised when revoking a role the user does not hold in the tenant."""


@transaction.atomic
def create_tenant(*, name: str, slug: str = "", first_admin: User | None = None) -> Tenant:
    """Create a tenant, deriving a free slug from the name when none is given."""
    tenant = Tenant.objects.create(name=name, slug=slug or free_slug_for(name))
    if first_admin is not None:
        UserRole.objects.create(tenant=tenant, user=first_admin, role=Role.ADMIN)
    return tenant


def free_slug_for(name: str) -> str:
    base = slugify(name)[:90] or "tenant"
    candidate, suffix = base, 2
    while Tenant.objects.filter(slug=candidate).exists():
        candidate, suffix = f"{base}-{suffix}", suffix + 1
    return candidate


@transaction.atomic
def grant_role(
    *, tenant: Tenant, user: User, role: Role, actor_id: int | None = None
) -> tuple[UserRole, bool]:
    """Give ``user`` exactly ``role`` in ``tenant``, replacing any role they held there.

    Returns the membership and whether it is new. ``actor_id`` is who grants it, for the
    audit trail.
    """
    membership = UserRole.objects.select_for_update().filter(tenant=tenant, user=user).first()
    previous = membership.role if membership is not None else None
    if membership is None:
        membership = UserRole.objects.create(tenant=tenant, user=user, role=role)
    elif membership.role == Role.ADMIN and role != Role.ADMIN:
        ensure_another_admin(tenant, leaving=user)
    if previous is not None:
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    if previous != role:
        record_event_after_commit(
            EventType.ROLE_GRANTED,
            tenant_id=tenant.pk,
            user_id=actor_id,
            payload={"target_user_id": user.pk, "role": role.value, "previous_role": previous},
        )
    return membership, previous is None


@transaction.atomic
def revoke_role(*, tenant: Tenant, user: User, role: Role, actor_id: int | None = None) -> None:
    """Remove ``user``'s membership in ``tenant`` if it carries ``role``."""
    membership = (
        UserRole.objects.select_for_update().filter(tenant=tenant, user=user, role=role).first()
    )
    if membership is None:
        # The user's id, not their email: an admin must not learn who any id belongs to.
        raise RoleNotHeldError(f"User {user.pk} is not {role.value} of tenant {tenant.pk}.")
    if role == Role.ADMIN:
        ensure_another_admin(tenant, leaving=user)
    membership.delete()
    record_event_after_commit(
        EventType.ROLE_REVOKED,
        tenant_id=tenant.pk,
        user_id=actor_id,
        payload={"target_user_id": user.pk, "role": role.value},
    )


def ensure_another_admin(tenant: Tenant, *, leaving: User) -> None:
    # Locking the admin rows serialises two admins demoting each other at the same time.
    other_admins = (
        UserRole.objects.select_for_update()
        .filter(tenant=tenant, role=Role.ADMIN)
        .exclude(user=leaving)
    )
    if not list(other_admins.values_list("pk", flat=True)):
        raise LastAdminError(
            f"Tenant {tenant.pk} would be left without an admin: grant admin to someone else first."
        )
