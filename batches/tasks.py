"""Celery tasks of batch jobs (queue `batch`): thin, take ids, have time limits, safe to run twice."""

from celery import shared_task
from django.db import DatabaseError

from batches.sources import TransientSourceError

# A chunk is redelivered if its worker dies (acks_late + reject_on_worker_lost); transient trouble
# (the database, the source's network) is retried with backoff; an unreadable item is a result.
_RETRY = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DatabaseError, OSError, TransientSourceError),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(name="batches.tasks.batch_list", time_limit=3600, soft_time_limit=3540, **_RETRY)
def batch_list(batch_id: str) -> int:
    from batches import services

    return services.batch_listing_run(batch_id=batch_id)


@shared_task(name="batches.tasks.batch_chunk", time_limit=900, soft_time_limit=840, **_RETRY)
def batch_chunk(chunk_id: int) -> str:
    from batches import services

    return services.batch_chunk_run(chunk_id=chunk_id)


@shared_task(name="batches.tasks.batch_to_samples", time_limit=3600, soft_time_limit=3540, **_RETRY)
def batch_to_samples(batch_id: str, keys, max_confidence, user_id) -> int:
    from batches import services

    return services.to_samples_run(batch_id=batch_id, keys=keys, max_confidence=max_confidence, user_id=user_id)


@shared_task(name="batches.tasks.batches_sweep", time_limit=60, soft_time_limit=50)
def batches_sweep() -> int:
    """Re-send chunks whose worker died and listings that stopped; finish batches that are done."""
    from batches import services

    return services.batches_sweep()
