from django.dispatch import receiver

from labeling.signals import samples_added
from training.services import embeddings_schedule


@receiver(samples_added)
def _embed_new_samples(sender, project_id, **kwargs):
    embeddings_schedule(project_id=project_id)
