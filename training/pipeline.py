"""The background flow of a project, in one place.

    samples added    → compute features                     (queue `embeddings`)
    features stored  → quick retrain, then queue order      (queue `default`)
    labels changed   → quick retrain (debounced)            (queue `default`)
    queue exhausted  → queue order                          (queue `default`)
    label names set  → zero-shot version                    (queue `default`)
    training asked   → run the job; it waits for the features of its labeled samples

Receivers of the labeling app's signals are one-line calls into the entry points below; the
periodic sweeps call `sweep_*`. Every step is queued once per project at a time (`enqueue_once`):
a step that is already waiting absorbs further requests, and the task frees its key when it starts,
so an event during a run queues exactly one more.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from config.dispatch import enqueue, enqueue_once, release_once


EMBED = "training.tasks.embed_project"
QUICK = "training.tasks.quick_retrain"
QUEUE = "training.tasks.queue_refresh"
RUN = "training.tasks.run_training_job"
ZERO_SHOT = "training.tasks.zero_shot_sync"


# --- entry points --------------------------------------------------------------------------------


def samples_added(*, project_id) -> bool:
    """New images: compute their features (one embedding run per project waits at a time)."""
    return enqueue_once(EMBED, key=f"embed:{project_id}", args=[str(project_id)], ttl=600)


def features_stored(*, project_id) -> bool:
    """New vectors: labeled samples may now be trainable, and the learner has new candidates."""
    return labels_changed(project_id=project_id)


def labels_changed(*, project_id) -> bool:
    """Debounced and coalesced: at most one quick retrain per project waits in the queue."""
    return enqueue_once(
        QUICK,
        key=f"quick:{project_id}",
        args=[str(project_id)],
        ttl=120,
        countdown=settings.PICTOR_QUICK_DEBOUNCE,
    )


def queue_exhausted(*, project_id) -> bool:
    """The learner's batch ran out (or the model changed): pick the next one."""
    return enqueue_once(QUEUE, key=f"queue:{project_id}", args=[str(project_id)], ttl=30)


def label_set_changed(*, project_id) -> bool:
    """Labels created, renamed, merged or deleted: map the names to a zero-shot version again."""
    return enqueue_once(ZERO_SHOT, key=f"zeroshot:{project_id}", args=[str(project_id)], ttl=60)


def _queue_of(job) -> str:
    from training.models import ModelVersion

    return "training" if job.mode == ModelVersion.Mode.FULL else "default"


def training_start(*, project, mode: str, user=None):
    """Create a training job (raises services.TrainingConflict for a second full one) and run it
    after the row committed. If the broker is down the job stays queued; the jobs sweep resends it.
    The page and the API both start trainings here."""
    from training import services

    job = services.training_job_create(project=project, mode=mode, user=user)
    transaction.on_commit(lambda: enqueue(RUN, args=[str(job.pk)], queue=_queue_of(job)))
    return job


def training_waiting(*, job, delay: float) -> None:
    """A job whose labeled samples lack features: look again in `delay` seconds (on its own queue)."""
    enqueue(RUN, args=[str(job.pk)], queue=_queue_of(job), countdown=delay)


def step_started(*, step: str, project_id) -> None:
    """Called by a task as it starts: later events queue the step again."""
    release_once(f"{step}:{project_id}")


# --- sweeps (beat) -------------------------------------------------------------------------------


def sweep_embeddings() -> int:
    """Projects with samples still lacking vectors (a worker crashed, the broker was down)."""
    from training import selectors

    queued = sum(samples_added(project_id=pid) for pid in selectors.projects_missing_features())
    sweep_feature_stores()
    return queued


def sweep_feature_stores() -> int:
    """Stores lost on this machine (a new machine, a wiped disk) are rebuilt from the database, the
    rest checked for gaps and caught up (training/services/features.py)."""
    from django.conf import settings

    from training import services
    from training.models import Embedding

    done = 0
    project_ids = Embedding.objects.order_by().values_list("project_id", flat=True).distinct()[:1000]
    for pid in project_ids:
        for backbone in settings.PICTOR_BACKBONES:
            done += services.feature_store_check(project_id=pid, backbone=backbone) == "rebuilt"
    return done


def sweep_trainings() -> int:
    """Fail stale running jobs, resend lost queued ones, retrain where labels outran the model, map
    label names whose zero-shot version was never made."""
    from training import selectors, services

    from config.dispatch import cache_add

    failed = services.training_jobs_sweep()
    for job in selectors.training_jobs_lost():
        # A duplicate delivery is harmless: only one worker's claim (queued → running) succeeds.
        if cache_add(f"job-resent:{job.pk}", 1, timeout=600):
            enqueue(RUN, args=[str(job.pk)], queue=_queue_of(job))
    for project_id in selectors.projects_with_unlearned_labels():
        labels_changed(project_id=project_id)
    for project_id in selectors.projects_missing_zero_shot():
        label_set_changed(project_id=project_id)
    return failed
