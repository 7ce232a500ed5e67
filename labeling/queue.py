"""The team labeling queue: who gets which sample next, under a lease.

Exclusivity comes from the database, not from locks held in Python: a Lease row is unique per
sample, taking an expired lease is a conditional UPDATE, and taking a free one is an INSERT that
fails if someone else inserted first. That holds on PostgreSQL and SQLite alike, across processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.utils import timezone

from labeling.hooks import queue_refresh_now
from labeling.models import LabelEvent, Lease, QueueBatch, Sample, Skip
from labeling.selectors import samples_unclaimed
from labeling.signals import queue_exhausted
from projects.models import Project


@dataclass
class QueueItem:
    sample: Sample
    score: float | None


def holder_for_user(user) -> str:
    return f"user:{user.pk}"


def holder_for_key(key) -> str:
    return f"key:{key.prefix}"


def _available(project: Project, holder: str, now) -> QuerySet[Sample]:
    skipped = Skip.objects.filter(sample=OuterRef("pk"), holder=holder)
    return samples_unclaimed(project=project, now=now).exclude(Exists(skipped))


def _try_lease(sample: Sample, holder: str, now, ttl: timedelta) -> bool:
    expires = now + ttl
    # An expired lease is taken over with a conditional UPDATE: of two racers only one matches.
    taken = bool(
        Lease.objects.filter(sample=sample, expires__lte=now).update(holder=holder, expires=expires, created=now)
    )
    if not taken:
        try:
            with transaction.atomic():
                Lease.objects.create(
                    sample=sample, project_id=sample.project_id, holder=holder, expires=expires, created=now
                )
            taken = True
        except IntegrityError:
            return False
    # The candidate was read before the lease: a teammate may have claimed and labeled it in
    # between (labeling deletes its lease, which is what let ours in). Labeling commits labeled_at
    # together with that delete, so checking after our lease is in sees it.
    if Sample.objects.filter(pk=sample.pk, labeled_at__isnull=True).exists():
        return True
    Lease.objects.filter(sample=sample, holder=holder).delete()
    return False


def _batch_stale(project: Project, batch: QueueBatch | None) -> bool:
    """True when labels arrived after the learner picked its batch (or there is none yet)."""
    last = Sample.objects.filter(project=project, labeled_at__isnull=False).aggregate(t=Max("labeled_at"))["t"]
    if batch is None:
        return True
    return last is not None and last >= batch.created


def _candidates(
    project: Project, holder: str, now, want: int, tried: set, *, refresh: bool = False
) -> list[tuple[Sample, float | None]]:
    """Samples in queue order: the active learner's batch first, then the project's fallback order.

    With ``refresh``, a batch that is older than the latest label or cannot fill ``want`` is
    recomputed right here (synchronously: ranking is milliseconds for a typical project, ~1 s for
    100k images) instead of waiting for the background refresh, which lags under load and then
    hands out an order that ignores the labels just given.
    """
    available = _available(project, holder, now).exclude(pk__in=tried)
    out: list[tuple[Sample, float | None]] = []
    seen: set = set()
    if project.queue_strategy == Project.QueueStrategy.ACTIVE:
        batch = QueueBatch.objects.filter(project=project).first()
        if refresh and (
            _batch_stale(project, batch)
            or available.filter(pk__in=(batch.sample_ids if batch is not None else [])).count() < want
        ):
            if queue_refresh_now(project=project, want=want):
                batch = QueueBatch.objects.filter(project=project).first()
        if batch is not None and batch.sample_ids:
            scores = dict(zip(batch.sample_ids, batch.scores))
            found = {str(s.pk): s for s in available.filter(pk__in=batch.sample_ids)}
            for sid in batch.sample_ids:
                if sid in found:
                    out.append((found[sid], scores.get(sid)))
                    seen.add(found[sid].pk)
            if len(out) < want:
                # The learner's batch is used up: have it pick the next one (new labels inform it).
                transaction.on_commit(lambda: queue_exhausted.send(sender=QueueBatch, project_id=project.pk))
    if len(out) < want:
        if project.queue_strategy == Project.QueueStrategy.OLDEST:
            order = ("created", "id")
        else:
            # A content hash is a stable, uniformly random order. The active learner falls back on it
            # too (before any vector exists): upload order would hand out one uploaded folder, one
            # class, first, and a quick model needs two labels.
            order = ("sha256",)
        extra = available.exclude(pk__in=seen).order_by(*order)[: max(want * 4, 8)]
        out += [(s, None) for s in extra]
    return out


def queue_claim(*, project: Project, holder: str, count: int = 1) -> list[QueueItem]:
    """The holder's next `count` samples, each leased to them; their live leases come first."""
    now = timezone.now()
    ttl = timedelta(seconds=settings.PICTOR_LEASE_SECONDS)
    mine = list(
        Lease.objects.filter(project=project, holder=holder, expires__gt=now, sample__labeled_at__isnull=True)
        .select_related("sample")
        .order_by("created", "id")[:count]
    )
    items = [QueueItem(sample=lease.sample, score=None) for lease in mine]
    tried: set = set()
    first = True
    # Teammates may lease every candidate of one read before we get to them: read again, past the
    # ones already tried, until we have enough or nothing is left.
    while len(items) < count:
        candidates = _candidates(project, holder, now, count - len(items), tried, refresh=first)
        first = False
        if not candidates:
            break
        for sample, score in candidates:
            tried.add(sample.pk)
            if _try_lease(sample, holder, now, ttl):
                items.append(QueueItem(sample=sample, score=score))
                if len(items) >= count:
                    break
    return items


def lease_release(*, sample: Sample, holder: str | None = None) -> None:
    qs = Lease.objects.filter(sample=sample)
    if holder is not None:
        qs = qs.filter(holder=holder)
    qs.delete()


def queue_skip(*, sample: Sample, holder: str) -> None:
    with transaction.atomic():
        lease_release(sample=sample, holder=holder)
        Skip.objects.get_or_create(sample=sample, holder=holder)


def remaining_count(*, project: Project) -> int:
    return Sample.objects.filter(project=project, labeled_at__isnull=True).count()


def done_today(*, project: Project, user) -> int:
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # Undone labels do not count (the number falls back when the labeler presses Z), nor do labels
    # that arrived with uploads (a zip's folder names are not a day's labeling work).
    return (
        LabelEvent.objects.filter(sample__project=project, user=user, created__gte=start, undone=False)
        .exclude(via__in=["undo", "upload", "api", "capture"])
        .exclude(new=[])
        .values("sample_id")
        .distinct()
        .count()
    )
