"""Writes for projects, memberships and invites. Views, the API and the CLI all call these."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from projects.models import Invite, Membership, Project
from projects.roles import Role

User = get_user_model()


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    if len(name) > 120:
        raise ValidationError({"name": "Names are at most 120 characters."})
    return name


def _clean_task(task: str) -> str:
    if task not in Project.Task.values:
        raise ValidationError({"task": f"Task must be one of {', '.join(Project.Task.values)}."})
    return task


@transaction.atomic
def project_create(
    *, name: str, owner: AbstractBaseUser, task: str = Project.Task.SINGLE_LABEL, description: str = ""
) -> Project:
    project = Project.objects.create(
        name=_clean_name(name),
        description=(description or "").strip(),
        task=_clean_task(task),
        created_by=owner,
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    return project


@transaction.atomic
def project_update(
    *,
    project: Project,
    name: str,
    description: str = "",
    queue_strategy: str | None = None,
    capture: str | None = None,
    capture_threshold: float | None = None,
) -> Project:
    project.name = _clean_name(name)
    project.description = (description or "").strip()
    if queue_strategy is not None:
        if queue_strategy not in Project.QueueStrategy.values:
            raise ValidationError({"queue_strategy": "Unknown queue order."})
        project.queue_strategy = queue_strategy
    if capture is not None:
        if capture not in Project.Capture.values:
            raise ValidationError({"capture": "Unknown capture mode."})
        project.capture = capture
    if capture_threshold is not None:
        if not 0.0 < capture_threshold < 1.0:
            raise ValidationError({"capture_threshold": "The threshold lies between 0 and 1."})
        project.capture_threshold = capture_threshold
    project.save()
    return project


PURGE = "projects.tasks.project_purge"
_PURGE_CHUNK = 2000


def project_delete(*, project: Project, confirmation: str) -> None:
    """Mark the project as being deleted (nobody reaches it from now on) and remove its rows and
    files in the background: a million samples cannot go in one request."""
    if (confirmation or "").strip() != project.name:
        raise ValidationError({"confirmation": "Type the project's name exactly to delete it."})
    from config.dispatch import enqueue

    project_id = project.pk
    with transaction.atomic():
        Project.objects.filter(pk=project_id).update(deleting=True)
        project.deleting = True
        transaction.on_commit(lambda: enqueue(PURGE, args=[str(project_id)]))


def project_purge(*, project_id) -> int:
    """Delete a project marked ``deleting``, its samples a chunk per transaction (each commit small,
    so other writers never wait long), then the project row, then its files. Safe to run twice and
    to resume after a crash. Returns the samples deleted."""
    from projects.signals import PURGE_STEPS, project_deleted

    if not Project.objects.filter(pk=project_id, deleting=True).exists():
        return 0
    deleted = 0
    for step in PURGE_STEPS:
        while True:
            with transaction.atomic():
                n = step(project_id, _PURGE_CHUNK)
            if not n:
                break
            deleted += n
    with transaction.atomic():
        Project.objects.filter(pk=project_id, deleting=True).delete()
        # Stored files go once the rows are surely gone (after commit), so a failure leaves orphaned
        # files, never rows pointing at nothing.
        transaction.on_commit(lambda: project_deleted.send(sender=Project, project_id=project_id))
    return deleted


def projects_purge_sweep() -> int:
    """Re-send the purge of projects still marked deleting (the broker was down, a worker died)."""
    from config.dispatch import enqueue

    ids = list(Project.objects.filter(deleting=True).values_list("pk", flat=True)[:100])
    for pid in ids:
        enqueue(PURGE, args=[str(pid)])
    return len(ids)


def _owners_locked(project: Project) -> list[Membership]:
    return list(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER).order_by("pk"))


def _find_user(identifier: str) -> AbstractBaseUser:
    identifier = (identifier or "").strip()
    if not identifier:
        raise ValidationError({"user": "Enter a username or an email address."})
    matches = list(User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier))[:2])
    if len(matches) != 1:
        raise ValidationError({"user": f"No single user is called {identifier!r}."})
    return matches[0]


def _clean_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of {', '.join(Role.values)}."})
    return role


@transaction.atomic
def member_add(*, project: Project, user_identifier: str, role: str) -> Membership:
    role = _clean_role(role)
    user = _find_user(user_identifier)
    if Membership.objects.filter(project=project, user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is already a member."})
    return Membership.objects.create(project=project, user=user, role=role)


@transaction.atomic
def member_role_change(*, membership: Membership, role: str) -> Membership:
    role = _clean_role(role)
    owners = _owners_locked(membership.project)
    membership.refresh_from_db()
    if membership.role == Role.OWNER and role != Role.OWNER and len(owners) <= 1:
        raise ValidationError({"role": "The last owner cannot step down; make someone else owner first."})
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership) -> None:
    owners = _owners_locked(membership.project)
    membership.refresh_from_db()
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise ValidationError({"user": "The last owner cannot leave; make someone else owner first."})
    membership.delete()


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_create(*, project: Project, created_by: AbstractBaseUser, role: str) -> tuple[Invite, str]:
    """Create a single-use invite link; the token is returned once and only its hash is kept."""
    token = secrets.token_urlsafe(32)
    invite = Invite.objects.create(
        project=project,
        token_hash=_hash_token(token),
        role=_clean_role(role),
        created_by=created_by,
        expires=timezone.now() + timedelta(days=settings.PICTOR_INVITE_DAYS),
    )
    return invite, token


def invite_get_valid(*, token: str) -> Invite:
    invite = Invite.objects.select_related("project").filter(token_hash=_hash_token(token or "")).first()
    if invite is None or invite.revoked:
        raise ValidationError("This invite link is not valid.")
    if invite.used is not None:
        raise ValidationError("This invite link has already been used.")
    if invite.expires <= timezone.now():
        raise ValidationError("This invite link has expired.")
    return invite


@transaction.atomic
def invite_accept(*, token: str, user: AbstractBaseUser) -> Membership:
    invite = invite_get_valid(token=token)
    # The conditional update makes the link single-use even when two people click at once.
    claimed = Invite.objects.filter(pk=invite.pk, used__isnull=True, revoked=False).update(
        used=timezone.now(), used_by=user
    )
    if not claimed:
        raise ValidationError("This invite link has already been used.")
    existing = Membership.objects.filter(project=invite.project, user=user).first()
    if existing is not None:
        return existing
    return Membership.objects.create(project=invite.project, user=user, role=invite.role)


def invite_revoke(*, invite: Invite) -> None:
    Invite.objects.filter(pk=invite.pk).update(revoked=True)
