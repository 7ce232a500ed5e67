import uuid

from django.conf import settings
from django.db import models

from labeling.models import Sample
from projects.models import Project


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
        indexes = [
            models.Index(fields=["project_id", "backbone"]),
            # A feature store catches up from its watermark: rows of one project and backbone by id.
            models.Index(fields=["project_id", "backbone", "id"], name="embedding_sync"),
        ]


class ModelVersion(models.Model):
    class Mode(models.TextChoices):
        QUICK = "quick", "Quick (linear head on embeddings)"
        FULL = "full", "Full fine-tune"
        # no training: the backbone's ImageNet head, summed over each label name's WordNet classes
        ZERO_SHOT = "zero_shot", "Zero-shot (ImageNet classes of the label names)"

    #: What a training job can be (a zero-shot version is made from the label names, never trained).
    TRAINED_MODES = (Mode.QUICK, Mode.FULL)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    mode = models.CharField(max_length=10, choices=Mode.choices)
    # "lite0", "lite2", "lite0+lite2" for quick heads; the fine-tuned backbone for full models.
    features = models.CharField(max_length=40)
    label_names = models.JSONField(default=list)
    thresholds = models.JSONField(null=True, blank=True)
    # Held-out evaluation: metrics (accuracy, macro_f1, per_label, confusion_matrix, pr_curves...);
    # the per-sample predictions they came from are HeldOutPrediction rows.
    metrics = models.JSONField(default=dict)
    n_train = models.PositiveIntegerField(default=0)
    artifact_name = models.CharField(max_length=300)  # head .npz (quick) or classifier .onnx (full)
    deployed = models.BooleanField(default=False)
    deployed_at = models.DateTimeField(null=True, blank=True)
    pinned = models.BooleanField(default=False)  # deployed by hand once: never pruned
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="unique_model_version"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(deployed=True), name="one_deployed_model_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version} ({self.mode})"


class HeldOutPrediction(models.Model):
    """One sample's held-out prediction by a model version (out-of-fold for quick models, the test
    split for full ones): the rows behind its metrics, for the confusion-matrix drill-down."""

    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="held_out")
    # Not a foreign key: the evaluation stays what it was when a sample is deleted later.
    sample_id = models.UUIDField()
    # Label names: one (single-label) or several (multi-label), as JSON lists.
    true = models.JSONField(default=list)
    predicted = models.JSONField(default=list)
    confidence = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["model", "id"])]


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_jobs")
    mode = models.CharField(max_length=10, choices=[(m.value, m.label) for m in ModelVersion.TRAINED_MODES])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=200, blank=True)
    history = models.JSONField(default=list)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(mode="full", status__in=["queued", "running"]),
                name="one_active_full_training",
            )
        ]


class LearningPoint(models.Model):
    """One version's accuracy against how many labels it knew: the models page's learning curve.
    Kept apart from ModelVersion because quick versions are pruned, and the curve is their history."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="learning_points")
    version = models.PositiveIntegerField()
    mode = models.CharField(max_length=10, choices=ModelVersion.Mode.choices)
    n_labels = models.PositiveIntegerField()
    accuracy = models.FloatField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["project", "created"])]
