"""Reads for projects: what the dashboard and project pages show."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from projects.models import Invite, Membership, Project

# Other apps register functions that add figures to a project's summary (samples, models...),
# so this app stays unaware of theirs: fn(project_ids) -> {project_id: {key: value}}.
SUMMARY_PROVIDERS: list = []


@dataclass
class ProjectSummary:
    project: Project
    role: str
    samples: int = 0
    labeled: int = 0
    deployed_version: int | None = None
    last_training_status: str | None = None
    api_requests_today: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def labeled_share(self) -> float:
        return self.labeled / self.samples if self.samples else 0.0


def _fill(summaries: list[ProjectSummary]) -> list[ProjectSummary]:
    by_id = {s.project.pk: s for s in summaries}
    for provider in SUMMARY_PROVIDERS:
        for project_id, values in provider(list(by_id)).items():
            summary = by_id.get(project_id)
            if summary is None:
                continue
            for key, value in values.items():
                if hasattr(summary, key):
                    setattr(summary, key, value)
                else:
                    summary.extra[key] = value
    return summaries


def project_summaries_for_user(*, user: AbstractBaseUser) -> list[ProjectSummary]:
    memberships = Membership.objects.select_related("project").filter(user=user).order_by("project__name")
    return _fill([ProjectSummary(project=m.project, role=m.role) for m in memberships])


def project_summary(*, project: Project, role: str) -> ProjectSummary:
    return _fill([ProjectSummary(project=project, role=role)])[0]


def member_list(*, project: Project) -> list[Membership]:
    return list(Membership.objects.select_related("user").filter(project=project).order_by("created"))


def invite_list_open(*, project: Project) -> list[Invite]:
    return list(
        Invite.objects.filter(project=project, used__isnull=True, revoked=False, expires__gt=timezone.now()).order_by(
            "-created"
        )
    )
