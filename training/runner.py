"""Runs one training job through its state machine; the Celery task is a thin call into this."""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from projects.models import Project
from training import services
from training.models import ModelVersion, TrainingJob

log = logging.getLogger(__name__)
S = TrainingJob.Status


def _wait_for_features(job: TrainingJob) -> str | None:
    """A job asked for needs the vectors of its labeled samples (a quick one fits on them; a full one
    blends with, and is judged against, the quick head fitted on them): requeue it (status queued, a
    message) until they exist, up to PICTOR_FEATURES_WAIT_SECONDS after it was asked for, then fail
    clearly."""
    from training import pipeline, selectors

    if selectors.labeled_label_count(project_id=job.project_id) < 2:
        return None  # features would not help: the fit fails with "not enough labels" right away
    missing = selectors.labeled_without_features(project_id=job.project_id, backbones=settings.PICTOR_BACKBONES)
    if not missing:
        return None
    limit = settings.PICTOR_FEATURES_WAIT_SECONDS
    waited = (timezone.now() - job.created).total_seconds()
    if waited >= limit:
        services.training_job_finish(
            job=job,
            status=S.FAILED,
            error=f"The features of {missing} labeled images were not ready within {limit} s. Are the "
            "embedding workers running (queue `embeddings`)? Ask for the training again once they are.",
        )
        return S.FAILED
    labeled = selectors.labeled_count(project_id=job.project_id)
    services.training_job_wait(
        job=job,
        message=f"waiting for the features of {missing} of {labeled} labeled images",
        progress=0.1 * (1 - missing / max(labeled, 1)),
    )
    pipeline.training_waiting(job=job, delay=min(5.0, max(0.5, limit / 100)))
    return S.QUEUED


def training_job_run(*, job_id, wait_for_features: bool = True) -> str | None:
    """Claim the job (a second delivery finds it claimed and returns), train, record the outcome."""
    job = services.training_job_claim(job_id=job_id)
    if job is None:
        return None
    from training import full, queue_order, quick
    from training.ml.recipes import Cancelled

    # this worker's feature stores may lag the database (vectors embedded on another machine)
    services.feature_stores_catch_up(project_id=job.project_id, backbones=settings.PICTOR_BACKBONES)

    if wait_for_features:
        waiting = _wait_for_features(job)
        if waiting is not None:
            return waiting

    try:
        if job.mode == ModelVersion.Mode.QUICK:
            model = quick.quick_train(job=job)
        else:
            with _Pulse(job_id=job.pk):
                model = full.full_train(job=job)
    except services.JobGone:
        log.info("job %s was ended elsewhere while running", job_id)
        return None
    except Cancelled:
        services.training_job_finish(job=job, status=S.CANCELLED, error="Cancelled by a user.")
        return S.CANCELLED
    except quick.NotEnoughLabels as exc:
        services.training_job_finish(job=job, status=S.FAILED, error=str(exc))
        return S.FAILED
    except DatabaseError:
        # Transient (connection lost, lock timeout): let the task retry from a clean state.
        TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(status=S.QUEUED)
        raise
    except Exception as exc:
        log.exception("training job %s failed", job_id)
        services.training_job_finish(
            job=job, status=S.FAILED, error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=5)}"
        )
        return S.FAILED
    if not services.training_job_finish(job=job, status=S.SUCCEEDED, model=model):
        # Cancelled or swept in the last instant: the version exists but is not deployed by us.
        return None
    if job.mode == ModelVersion.Mode.QUICK:
        queue_order.queue_refresh(project_id=job.project_id)
    return S.SUCCEEDED


def quick_retrain_run(*, project_id) -> str | None:
    """The debounced retrain: one job (made like any other) and one fit for whatever labels exist now."""
    from training import pipeline, queue_order, quick

    pipeline.step_started(step="quick", project_id=project_id)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    services.feature_stores_catch_up(project_id=project.pk, backbones=settings.PICTOR_BACKBONES)
    try:
        quick.check_trainable(project=project)
    except quick.NotEnoughLabels:
        # Nothing to learn yet: the learner still needs a fresh cold-start batch.
        queue_order.queue_refresh(project_id=project_id)
        return None
    job = services.training_job_create(project=project, mode=ModelVersion.Mode.QUICK)
    # A background retrain fits what has features now; the embedding run's features_stored
    # queues the next one. Only a training someone asked for waits for every feature.
    return training_job_run(job_id=job.pk, wait_for_features=False)


def training_job_timed_out(*, job_id) -> None:
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is not None:
        services.training_job_finish(job=job, status=S.FAILED, error="The job hit its time limit.")


class _Pulse(contextlib.AbstractContextManager):
    """Keeps a running job's heartbeat fresh from a background thread while it trains.

    Progress reports alone leave long silent stretches (reading every image, loading the model,
    the linear-probe pass over the whole train split, held-out evaluation, the quick baseline,
    ONNX export; or a few slow steps on a busy CPU) that can outlast PICTOR_JOB_STALE_SECONDS, and
    the sweeper would then fail a healthy job. The heartbeat means "the worker process is alive":
    the thread dies with a killed worker, so the sweeper still catches those; a hung-but-alive
    job is bounded by the task's time limit instead.
    """

    def __init__(self, *, job_id, every: float | None = None):
        self.job_id = job_id
        self.every = every or min(30.0, max(1.0, settings.PICTOR_JOB_STALE_SECONDS / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-pulse-{job_id}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        return None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    alive = TrainingJob.objects.filter(pk=self.job_id, status=S.RUNNING).update(
                        heartbeat=timezone.now()
                    )
                except DatabaseError:
                    log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
                    continue
                if not alive:  # ended elsewhere (cancelled, swept): the trainer notices on its own
                    return
        finally:
            connection.close()  # this thread's own connection
