from django.db import models

from labeling.models import Sample


class Embedding(models.Model):
    """One backbone's pooled, L2-normalised feature vector of a sample, stored as float16 bytes."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="embeddings")
    # Denormalised so a project's matrix loads with one indexed query, without joining samples.
    project_id = models.UUIDField(db_index=True)
    backbone = models.CharField(max_length=20)
    vector = models.BinaryField()
    # Set (and vector left empty) when the stored image could not be read: not retried forever.
    error = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sample", "backbone"], name="one_embedding_per_backbone")]
        indexes = [models.Index(fields=["project_id", "backbone"])]
