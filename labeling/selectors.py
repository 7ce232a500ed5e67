"""Reads for samples and labels."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from labeling.models import Label, LabelEvent, Lease, Sample, SampleLabel
from projects.access import parse_uuid
from projects.models import Project


def project_sample_figures(project_ids: list) -> dict:
    """Samples and labeled samples per project; large projects' figures are cached briefly (see
    COUNT_CACHE_ABOVE), counting a million rows costs more than the page may take."""
    from django.core.cache import cache

    keys = {pid: f"sample-figures:{pid}" for pid in project_ids}
    cached = cache.get_many(list(keys.values()))
    out = {pid: cached[key] for pid, key in keys.items() if key in cached}
    rest = [pid for pid in project_ids if pid not in out]
    if rest:
        rows = (
            Sample.objects.filter(project_id__in=rest)
            .values("project_id")
            .annotate(samples=Count("id"), labeled=Count("id", filter=Q(labeled_at__isnull=False)))
        )
        for r in rows:
            figures = {"samples": r["samples"], "labeled": r["labeled"]}
            out[r["project_id"]] = figures
            if r["samples"] > COUNT_CACHE_ABOVE:
                cache.set(keys[r["project_id"]], figures, COUNT_SECONDS)
    return out


def samples_unclaimed(*, project: Project, now) -> QuerySet[Sample]:
    """Samples the queue may still hand out: unlabeled, and under no live lease at ``now``."""
    live_lease = Lease.objects.filter(sample=OuterRef("pk"), expires__gt=now)
    return Sample.objects.filter(project=project, labeled_at__isnull=True).exclude(Exists(live_lease))


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
        # A semi-join on the label's rows (not a join walking samples newest first until enough
        # carry the label): one label's samples are then found and sorted directly.
        label_ids = Label.objects.filter(project=project, name=label).values("pk")
        qs = qs.filter(pk__in=SampleLabel.objects.filter(label_id__in=label_ids).values("sample_id"))
    qs = qs.prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
    if video:
        return qs.filter(video_sha256=video).order_by("video_time_ms", "id")
    return qs.order_by("-created", "id")


@dataclass
class SamplePage:
    """One keyset page of samples, newest first: ``items`` plus cursors for the pages around it."""

    items: list[Sample]
    count: int
    next_cursor: str | None
    previous_cursor: str | None


class BadCursor(ValueError):
    pass


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    """The text inside a cursor (ValueError or UnicodeDecodeError when it is not one of ours)."""
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


def _cursor(direction: str, sample: Sample) -> str:
    return _encode(f"{direction}|{sample.created.isoformat()}|{sample.pk}")


def _parse_cursor(cursor: str) -> tuple[str, datetime, uuid.UUID]:
    try:
        direction, created, pk = _decode(cursor).split("|")
        if direction not in ("a", "b"):
            raise ValueError(direction)
        return direction, datetime.fromisoformat(created), uuid.UUID(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("The cursor is not one this API handed out.") from exc


#: Counts above this are cached for COUNT_SECONDS: COUNT(*) over a million rows costs a page's time
#: budget on its own, and "1,000,412 samples" may lag half a minute; small counts are always exact.
COUNT_CACHE_ABOVE = 50_000
COUNT_SECONDS = 30


def _count(qs, *, key: str) -> int:
    from django.core.cache import cache

    hit = cache.get(key)
    if hit is not None:
        return hit
    started = time.perf_counter()
    count = qs.order_by().count()
    # large, or slow to count (a label filter over a large project): cached briefly
    if count > COUNT_CACHE_ABOVE or (count > 1000 and time.perf_counter() - started > 0.05):
        cache.set(key, count, COUNT_SECONDS)
    return count


def _video_page(qs, *, cursor: str | None, size: int) -> SamplePage:
    offset = 0
    if cursor:
        try:
            kind, value = _decode(cursor).split("|")
            offset = int(value)
            if kind != "v" or offset < 0:
                raise ValueError(kind)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadCursor("The cursor is not one this API handed out.") from exc

    count = qs.count()
    rows = list(qs[offset : offset + size])
    return SamplePage(
        items=rows,
        count=count,
        next_cursor=_encode(f"v|{offset + size}") if offset + size < count else None,
        previous_cursor=_encode(f"v|{max(0, offset - size)}") if offset > 0 else None,
    )


def sample_page(
    *,
    project: Project,
    labeled: bool | None = None,
    label: str | None = None,
    video: str | None = None,
    cursor: str | None = None,
    size: int = 50,
) -> SamplePage:
    """A page of :func:`sample_list` by keyset (``created``, ``id``), so page 20,000 costs what page 1
    does (an index range scan, ``sample_page`` indexes), plus the filtered count. One video's frames
    (a few hundred at most, PICTOR_VIDEO_MAX_FRAMES) are paged in time order by offset."""
    if video:
        return _video_page(
            sample_list(project=project, labeled=labeled, label=label, video=video), cursor=cursor, size=size
        )
    qs = sample_list(project=project, labeled=labeled, label=label)
    count = _count(qs, key=f"samples-count:{project.pk}:{labeled}:{label}")
    direction = None
    if cursor:
        direction, created, pk = _parse_cursor(cursor)
        # The redundant bound on created alone lets the index range scan start at the cursor; the OR
        # only sorts out the rows created at that very instant.
        if direction == "a":  # after: older, or as old with a larger id (the order is -created, id)
            qs = qs.filter(created__lte=created).filter(Q(created__lt=created) | Q(id__gt=pk))
        else:
            qs = (
                qs.filter(created__gte=created).filter(Q(created__gt=created) | Q(id__lt=pk)).order_by("created", "-id")
            )
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if direction == "b":
        rows.reverse()
    has_next = more if direction != "b" else True
    has_previous = direction == "a" or (direction == "b" and more)
    return SamplePage(
        items=rows,
        count=count,
        next_cursor=_cursor("a", rows[-1]) if rows and has_next else None,
        previous_cursor=_cursor("b", rows[0]) if rows and has_previous else None,
    )


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
