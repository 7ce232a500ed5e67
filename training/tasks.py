"""Celery tasks: thin, take ids, have time limits, safe to run twice."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

log = logging.getLogger(__name__)


@shared_task(name="training.tasks.embed_project", time_limit=3600, soft_time_limit=3540, acks_late=True)
def embed_project(project_id: str) -> int:
    from training import pipeline, services

    pipeline.step_started(step="embed", project_id=project_id)
    n = services.embeddings_compute(project_id=project_id)
    if n:
        pipeline.features_stored(project_id=project_id)
    return n


# The soft limit must stay below the hard one (the global soft limit is 540): beat refuses otherwise.
@shared_task(name="training.tasks.embeddings_sweep", time_limit=60, soft_time_limit=50)
def embeddings_sweep() -> int:
    """Re-queue projects with samples still lacking vectors (after a worker crash, say)."""
    from training import pipeline

    return pipeline.sweep_embeddings()


@shared_task(name="training.tasks.quick_retrain", time_limit=300, soft_time_limit=280)
def quick_retrain(project_id: str) -> str | None:
    from training import runner

    return runner.quick_retrain_run(project_id=project_id)


@shared_task(name="training.tasks.queue_refresh", time_limit=120, soft_time_limit=110)
def queue_refresh(project_id: str) -> int:
    from training import pipeline, queue_order

    pipeline.step_started(step="queue", project_id=project_id)
    return queue_order.queue_refresh(project_id=project_id)


@shared_task(name="training.tasks.zero_shot_sync", time_limit=120, soft_time_limit=110)
def zero_shot_sync(project_id: str) -> str | None:
    from training import pipeline, zeroshot

    pipeline.step_started(step="zeroshot", project_id=project_id)
    model = zeroshot.zero_shot_sync(project_id=project_id)
    return str(model.pk) if model else None


@shared_task(
    name="training.tasks.run_training_job",
    time_limit=settings.PICTOR_TRAINING_TIME_LIMIT + 120,
    soft_time_limit=settings.PICTOR_TRAINING_TIME_LIMIT,
    acks_late=True,
    # Only transient database trouble is retried (the runner put the job back to queued first);
    # a training that fails on its own merits is final.
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    max_retries=3,
)
def run_training_job(job_id: str) -> str | None:
    from training import runner

    try:
        return runner.training_job_run(job_id=job_id)
    except SoftTimeLimitExceeded:
        runner.training_job_timed_out(job_id=job_id)
        return None


@shared_task(name="training.tasks.training_jobs_sweep", time_limit=60, soft_time_limit=50)
def training_jobs_sweep() -> int:
    """Fail stale running jobs, re-send lost queued ones, retrain quick models that missed labels."""
    from training import pipeline

    return pipeline.sweep_trainings()
