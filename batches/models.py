"""Batch jobs: a pinned model run over an archive, fanned out in chunks; one result row per item."""

import uuid

from django.conf import settings
from django.db import models

from projects.models import Project
from training.models import ModelVersion


class BatchUpload(models.Model):
    """An uploaded zip or (plain) tar, streamed to storage; a batch reads its members in place."""

    class Kind(models.TextChoices):
        ZIP = "zip"
        TAR = "tar"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batch_uploads")
    storage_name = models.CharField(max_length=300)
    kind = models.CharField(max_length=3, choices=Kind.choices)
    bytes = models.BigIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)


class Batch(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        LISTING = "listing"
        RUNNING = "running"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Kind(models.TextChoices):
        UPLOAD = "upload"
        FOLDER = "folder"
        S3 = "s3"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    # Chunks are processed only in these states; pause and cancel are honoured between chunks.
    ACTIVE = (Status.LISTING, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batches")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    source_kind = models.CharField(max_length=6, choices=Kind.choices)
    # upload: the BatchUpload id; folder: the resolved absolute path; s3: the s3:// uri.
    source_ref = models.CharField(max_length=1100)
    upload = models.ForeignKey(BatchUpload, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Fixed for the batch's life; restricted, so quick-model pruning keeps it (results need its labels)
    # while deleting the whole project still takes both.
    model = models.ForeignKey(ModelVersion, on_delete=models.RESTRICT, related_name="+")
    model_version = models.PositiveIntegerField()
    top_k = models.PositiveIntegerField(null=True, blank=True)
    fps = models.FloatField(default=1.0)  # videos in the source: frames sampled per second, pinned
    chunk_size = models.PositiveIntegerField(default=256)  # items per chunk, fixed at the start
    listed = models.BooleanField(default=False)  # every chunk row exists; total is final
    chunks = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    # Time spent working before the current stretch (run_since..now), for an honest items/s across pauses.
    active_seconds = models.FloatField(default=0.0)
    run_since = models.DateTimeField(null=True, blank=True)
    listing_beat = models.DateTimeField(null=True, blank=True)  # the listing task's last sign of life
    progressed = models.DateTimeField(null=True, blank=True)  # the last chunk that finished
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=models.Q(done__gte=0) & models.Q(failed__gte=0), name="batch_counts_ok")
        ]


class BatchChunk(models.Model):
    """A slice of the listing: up to PICTOR_BATCH_CHUNK item references, processed by one task."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunk_rows")
    index = models.PositiveIntegerField()
    # [[key, locator...]]: the key plus what a worker needs to read it in place (archive offsets).
    items = models.JSONField()
    size = models.PositiveIntegerField()
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    claimed = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="unique_batch_chunk")]
        indexes = [models.Index(fields=["batch", "status"])]


class BatchResult(models.Model):
    """One item's answer (or its error). Unique per (batch, key): a redelivered chunk writes nothing twice."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="results")
    seq = models.PositiveBigIntegerField()  # listing order: chunk index * chunk size + position
    key = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64, blank=True)
    # Single-label: the top label; multi-label: the most confident one (filters use `present`).
    label = models.CharField(max_length=100, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # Multi-label: "|a|b|" so a label filter is one LIKE on every database.
    present = models.CharField(max_length=2000, blank=True)
    # Compact top-k: [[label index, confidence], ...] into the model's label_names.
    top = models.JSONField(default=list)
    error = models.JSONField(null=True, blank=True)  # {"code", "message"}
    # Videos only: label segments, compact [[label index, start ms, stop ms, confidence], ...].
    segments = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "key"], name="unique_batch_item")]
        indexes = [
            models.Index(fields=["batch", "seq"]),
            models.Index(fields=["batch", "label", "confidence"]),
            models.Index(fields=["batch", "confidence"]),
        ]
