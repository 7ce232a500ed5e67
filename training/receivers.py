"""The labeling app's signals, each a one-line call into the pipeline (training/pipeline.py)."""

from django.dispatch import receiver

from labeling.hooks import LABEL_NOTES, QUEUE_REFRESHERS, SUGGESTERS
from labeling.signals import label_set_changed, labels_changed, queue_exhausted, samples_added
from projects.signals import project_deleted
from training import pipeline


@receiver(project_deleted)
def _on_project_deleted(sender, project_id, **kwargs):
    from training.services import feature_stores_delete

    feature_stores_delete(project_id=project_id)


@receiver(samples_added)
def _on_samples_added(sender, project_id, **kwargs):
    pipeline.samples_added(project_id=project_id)


@receiver(labels_changed)
def _on_labels_changed(sender, project_id, **kwargs):
    pipeline.labels_changed(project_id=project_id)


@receiver(queue_exhausted)
def _on_queue_exhausted(sender, project_id, **kwargs):
    pipeline.queue_exhausted(project_id=project_id)


@receiver(label_set_changed)
def _on_label_set_changed(sender, project_id, **kwargs):
    pipeline.label_set_changed(project_id=project_id)


def _suggest(project, samples):
    from training.quick import suggestions

    return suggestions(project, samples)


SUGGESTERS.append(_suggest)


def _queue_refresh_now(project, want: int) -> None:
    from training.queue_order import queue_refresh, ranks_in_background

    # A large project's re-rank takes seconds: it runs in the background while the labeler gets
    # the rest of the current (larger) batch, so the next item stays a few milliseconds.
    if ranks_in_background(project_id=project.pk):
        pipeline.queue_exhausted(project_id=project.pk)
        return
    queue_refresh(project_id=project.pk, batch_size=want, in_request=True)


QUEUE_REFRESHERS.append(_queue_refresh_now)


def _label_notes(project, names: list[str]) -> dict:
    from training.selectors import label_imagenet

    return {name: {"imagenet": mapping} for name, mapping in label_imagenet(names=names).items()}


LABEL_NOTES.append(_label_notes)
