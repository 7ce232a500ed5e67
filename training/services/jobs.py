"""Writes of the training app: training jobs and their state machine.

queued → running → succeeded | failed | cancelled. Every transition is a conditional UPDATE on the
current status, so two workers (or a worker and the sweeper) can never both win one.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from training.models import ModelVersion, TrainingJob

log = logging.getLogger(__name__)

S = TrainingJob.Status


class JobGone(Exception):
    """The job was cancelled or failed by someone else (the sweeper, a user) while running."""


class TrainingConflict(Exception):
    """A full training of the project is already queued or running (API: 409 conflict)."""


def training_job_create(*, project, mode: str, user=None) -> TrainingJob:
    if mode not in ModelVersion.TRAINED_MODES:
        from django.core.exceptions import ValidationError

        raise ValidationError({"mode": "mode must be 'quick' or 'full'."})
    try:
        # The database holds the rule "one full training at a time" (constraint one_active_full_training).
        with transaction.atomic():
            job = TrainingJob.objects.create(project=project, mode=mode, created_by=user)
    except IntegrityError:
        raise TrainingConflict("A full training of this project is already queued or running.") from None
    return job


def training_job_claim(*, job_id) -> TrainingJob | None:
    now = timezone.now()
    claimed = TrainingJob.objects.filter(pk=job_id, status=S.QUEUED, cancel_requested=False).update(
        status=S.RUNNING, started=now, heartbeat=now, attempts=F("attempts") + 1
    )
    if not claimed:
        TrainingJob.objects.filter(pk=job_id, status=S.QUEUED, cancel_requested=True).update(
            status=S.CANCELLED, finished=now
        )
        return None
    return TrainingJob.objects.select_related("project").get(pk=job_id)


def training_job_heartbeat(
    *, job: TrainingJob, progress: float | None = None, message: str | None = None, history_entry: dict | None = None
) -> None:
    """Record liveness and progress; raise JobGone if the job is no longer ours to run."""
    fields = {"heartbeat": timezone.now()}
    if progress is not None:
        fields["progress"] = max(0.0, min(1.0, float(progress)))
    if message is not None:
        fields["message"] = message[:200]
    if history_entry is not None:
        job.history = [*job.history, history_entry]
        fields["history"] = job.history
    if not TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(**fields):
        raise JobGone()


def training_job_wait(*, job: TrainingJob, message: str, progress: float = 0.0) -> bool:
    """Put a claimed job back in the queue to wait (for features); the heartbeat says it is looked after."""
    return bool(
        TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(
            status=S.QUEUED, message=message[:200], progress=max(0.0, min(1.0, progress)), heartbeat=timezone.now()
        )
    )


def training_job_cancel_requested(*, job: TrainingJob) -> bool:
    return TrainingJob.objects.filter(pk=job.pk, cancel_requested=True).exists()


def training_job_finish(*, job: TrainingJob, status: str, error: str = "", model: ModelVersion | None = None) -> bool:
    updated = TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(
        status=status,
        error=error[:4000],
        model=model,
        finished=timezone.now(),
        progress=1.0 if status == S.SUCCEEDED else F("progress"),
    )
    return bool(updated)


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Ask a job to stop: a queued one is cancelled now, a running one at its next step."""
    now = timezone.now()
    TrainingJob.objects.filter(pk=job.pk, status__in=[S.QUEUED, S.RUNNING]).update(cancel_requested=True)
    TrainingJob.objects.filter(pk=job.pk, status=S.QUEUED).update(status=S.CANCELLED, finished=now)
    job.refresh_from_db()
    return job


def training_jobs_sweep(*, stale_seconds: int | None = None) -> int:
    """Fail running jobs whose worker stopped sending heartbeats (killed, lost, out of memory)."""
    stale_seconds = stale_seconds or settings.PICTOR_JOB_STALE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    return TrainingJob.objects.filter(status=S.RUNNING, heartbeat__lt=cutoff).update(
        status=S.FAILED,
        finished=timezone.now(),
        error=f"The worker stopped responding (no heartbeat for {stale_seconds} s); the job was failed. "
        "The deployed model is unchanged.",
    )
