from config.dispatch import cache_add, enqueue
from django.db import transaction
from django.dispatch import receiver

from labeling.hooks import QUEUE_REFRESHERS, SUGGESTERS
from labeling.signals import labels_changed, queue_exhausted, samples_added
from training.services import embeddings_schedule


@receiver(samples_added)
def _embed_new_samples(sender, project_id, **kwargs):
    embeddings_schedule(project_id=project_id)


@receiver(labels_changed)
def _retrain_on_labels(sender, project_id, **kwargs):
    from training.quick import quick_retrain_schedule

    quick_retrain_schedule(project_id=project_id)


def _queue_refresh_schedule(project_id) -> None:
    key = f"queue-refresh:{project_id}"
    if cache_add(key, 1, timeout=30):
        from training.tasks import queue_refresh

        transaction.on_commit(lambda: enqueue(queue_refresh, args=[str(project_id)], release_key=key))


@receiver(queue_exhausted)
def _refill_queue(sender, project_id, **kwargs):
    _queue_refresh_schedule(project_id)


def embeddings_done(project_id) -> None:
    """New vectors: labeled samples may now be trainable, and the learner has new candidates."""
    from training.quick import quick_retrain_schedule

    quick_retrain_schedule(project_id=project_id)


def _suggest(project, samples):
    from training.quick import suggestions

    return suggestions(project, samples)


SUGGESTERS.append(_suggest)


def _queue_refresh_now(project, want: int) -> None:
    from training.quick import queue_refresh

    queue_refresh(project_id=project.pk, batch_size=want)


QUEUE_REFRESHERS.append(_queue_refresh_now)
