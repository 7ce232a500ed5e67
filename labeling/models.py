import uuid

from django.conf import settings
from django.db import models

from projects.models import Project


class Label(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#2457d6")
    shortcut = models.CharField(max_length=1, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_label_name")]

    def __str__(self) -> str:
        return self.name


class Sample(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        API = "api", "API"
        CAPTURE = "capture", "Captured from invoke"
        VIDEO = "video", "Frame of an uploaded video"
        BATCH = "batch", "Sent from a batch job"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="samples")
    sha256 = models.CharField(max_length=64)
    # Storage names (Django storage API), written before this row exists.
    image_name = models.CharField(max_length=300)
    thumbnail_name = models.CharField(max_length=300)
    filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    # A frame sampled from a video (uploaded, or captured by invoke): which video, and when in it.
    video_sha256 = models.CharField(max_length=64, blank=True, default="")
    video_time_ms = models.PositiveIntegerField(null=True, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set when the sample gets its first label, cleared when its last label goes; kept with the
    # label rows in one transaction so counts and queue filters need no join.
    labeled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    labels = models.ManyToManyField(Label, through="SampleLabel", related_name="samples")

    class Meta:
        ordering = ["-created", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="unique_sample_sha256")]
        indexes = [
            models.Index(fields=["project", "labeled_at"]),
            models.Index(fields=["project", "video_sha256"], name="sample_video_idx"),
            # The sample browser's keyset pages (newest first), all samples and unlabeled ones.
            models.Index(fields=["project", "-created", "id"], name="sample_page"),
            models.Index(
                fields=["project", "-created", "id"],
                name="sample_page_unlabeled",
                condition=models.Q(labeled_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.filename or str(self.pk)

    @property
    def video_time(self) -> str:
        """Where in its video this frame is, as m:ss.mmm ("" for other samples)."""
        if self.video_time_ms is None:
            return ""
        minutes, ms = divmod(self.video_time_ms, 60_000)
        return f"{minutes}:{ms / 1000:06.3f}"


class SampleLabel(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="sample_labels")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="sample_labels")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sample", "label"], name="unique_sample_label")]
        # One label's samples without touching the table (the browser's label filter, its count).
        indexes = [models.Index(fields=["label", "sample"], name="samplelabel_by_label")]


class LabelEvent(models.Model):
    """Audit trail: every change of a sample's labels, who made it and when."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="label_events")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    old = models.JSONField(default=list)
    new = models.JSONField(default=list)

    class Via(models.TextChoices):
        WEB = "web", "web page or API session"
        API = "api", "API key"
        SESSION = "session", "labeling page"
        GRID = "grid", "grid labeling"
        UNDO = "undo", "undo"
        MERGE = "merge", "label merge"
        LABEL_DELETE = "label-delete", "label deletion"
        REVIEW_FIX = "review-fix", "review: fixed"
        REVIEW_CONFIRM = "review-confirm", "review: confirmed"
        UPLOAD = "upload", "upload"
        CAPTURE = "capture", "captured by invoke"
        VIDEO = "video", "video upload"

    via = models.CharField(max_length=20, choices=Via.choices, default=Via.WEB)
    undone = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]


class Lease(models.Model):
    """A sample handed to one labeler (or API key) from the queue; nobody else gets it until it expires."""

    sample = models.OneToOneField(Sample, on_delete=models.CASCADE, related_name="lease")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    holder = models.CharField(max_length=64, db_index=True)  # "user:<id>" or "key:<prefix>"
    expires = models.DateTimeField(db_index=True)
    created = models.DateTimeField()


class Skip(models.Model):
    """A holder skipped this sample: they are not offered it again (others are)."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+")
    holder = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sample", "holder"], name="one_skip_per_holder")]


class QueueBatch(models.Model):
    """The active learner's current pick, in the order to label it; refreshed when the model changes."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="queue_batch")
    sample_ids = models.JSONField(default=list)
    scores = models.JSONField(default=list)
    phase = models.CharField(max_length=20, blank=True)
    model_version = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now=True)
