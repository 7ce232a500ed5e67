"""Reads for samples and labels."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet

from labeling.models import Label, LabelEvent, Sample
from projects.access import parse_uuid
from projects.models import Project


def project_sample_figures(project_ids: list) -> dict:
    rows = (
        Sample.objects.filter(project_id__in=project_ids)
        .values("project_id")
        .annotate(samples=Count("id"), labeled=Count("id", filter=Q(labeled_at__isnull=False)))
    )
    return {r["project_id"]: {"samples": r["samples"], "labeled": r["labeled"]} for r in rows}


def label_list(*, project: Project) -> list[Label]:
    return list(Label.objects.filter(project=project).annotate(sample_count=Count("sample_labels")))


def sample_list(
    *, project: Project, labeled: bool | None = None, label: str | None = None, video: str | None = None
) -> QuerySet[Sample]:
    """Newest first; the frames of one video (its sha256) in time order."""
    qs = Sample.objects.filter(project=project)
    if labeled is True:
        qs = qs.filter(labeled_at__isnull=False)
    elif labeled is False:
        qs = qs.filter(labeled_at__isnull=True)
    if label:
        qs = qs.filter(sample_labels__label__name=label)
    qs = qs.prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
    if video:
        return qs.filter(video_sha256=video).order_by("video_time_ms", "id")
    return qs.order_by("-created", "id")


def sample_get(*, project: Project, sample_id) -> Sample | None:
    pk = parse_uuid(sample_id)
    if pk is None:
        return None
    return (
        Sample.objects.filter(project=project, pk=pk)
        .select_related("project")
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
        .first()
    )


def sample_label_names(sample: Sample) -> list[str]:
    return [label.name for label in sample.labels.all()]


def sample_history(*, sample: Sample, limit: int = 50) -> list[LabelEvent]:
    return list(LabelEvent.objects.filter(sample=sample).select_related("user")[:limit])


def labeler_counts(*, project: Project) -> list[dict]:
    """Per labeler: samples labeled today and in all (distinct samples, from the audit trail)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    events = LabelEvent.objects.filter(sample__project=project, user__isnull=False).exclude(new=[])
    total = dict(events.values_list("user").annotate(n=Count("sample", distinct=True)).values_list("user", "n"))
    today = dict(
        events.filter(created__gte=start)
        .values_list("user")
        .annotate(n=Count("sample", distinct=True))
        .values_list("user", "n")
    )
    users = get_user_model().objects.in_bulk(list(total))
    rows = [{"user": users[u], "today": today.get(u, 0), "total": n} for u, n in total.items() if u in users]
    return sorted(rows, key=lambda r: (-r["today"], -r["total"], r["user"].get_username()))
