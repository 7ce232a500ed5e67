"""The one place that decides whether a user may reach a project, and with which role.

Outsiders get 404 so that project ids cannot be probed; members whose role is too low get 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from projects.models import Membership, Project
from projects.roles import Role, at_least


@dataclass(frozen=True)
class ProjectAccess:
    """Who reaches a project and how: a member (membership set) or an API key (api_key set)."""

    project: Project
    role: str
    membership: Membership | None = None
    api_key: object | None = None

    @property
    def user(self):
        return self.membership.user if self.membership is not None else None

    def can(self, minimum: str) -> bool:
        return at_least(self.role, minimum)


def parse_uuid(value: object) -> uuid.UUID | None:
    """The UUID in value, or None: malformed ids from URLs and bodies end as 404s, not errors."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        return None


def project_access_get(
    *, user: AbstractBaseUser | AnonymousUser, project_id: object, minimum: str = Role.VIEWER
) -> ProjectAccess:
    """Return the project and the user's membership, or raise Http404 / PermissionDenied."""
    pid = parse_uuid(project_id)
    if pid is None or not user.is_authenticated:
        raise Http404("No such project.")
    membership = (
        Membership.objects.select_related("project", "user")
        .filter(project_id=pid, user=user, project__deleting=False)
        .first()
    )
    if membership is None:
        raise Http404("No such project.")
    if not at_least(membership.role, minimum):
        raise PermissionDenied(f"This needs the {Role(minimum).label.lower()} role; you are {membership.role}.")
    return ProjectAccess(project=membership.project, role=membership.role, membership=membership)
