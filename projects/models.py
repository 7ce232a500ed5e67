import uuid

from django.conf import settings
from django.db import models

from rest_framework_api_key.models import AbstractAPIKey

from projects.roles import Role


class Project(models.Model):
    class Task(models.TextChoices):
        SINGLE_LABEL = "single_label", "Single label (one class per image)"
        MULTI_LABEL = "multi_label", "Multi label (any number of labels per image)"

    class QueueStrategy(models.TextChoices):
        ACTIVE = "active", "Active learning"
        RANDOM = "random", "Random"
        OLDEST = "oldest", "Oldest first"

    class Capture(models.TextChoices):
        OFF = "off", "Off"
        ALL = "all", "Every invoked image"
        UNCERTAIN = "uncertain", "Uncertain images only"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=20, choices=Task.choices, default=Task.SINGLE_LABEL)
    queue_strategy = models.CharField(max_length=10, choices=QueueStrategy.choices, default=QueueStrategy.ACTIVE)
    capture = models.CharField(max_length=10, choices=Capture.choices, default=Capture.OFF)
    capture_threshold = models.FloatField(default=0.6)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # Set when an owner deleted it: the rows go in the background (projects/tasks.py), in chunks,
    # and nobody reaches the project meanwhile.
    deleting = models.BooleanField(default=False)

    class Meta:
        ordering = ["name", "created"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_multi_label(self) -> bool:
        return self.task == self.Task.MULTI_LABEL


class Membership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]
        ordering = ["created"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Invite(models.Model):
    """A single-use link that makes whoever opens it (signed in) a member with `role`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invites")
    # Only a hash is stored: a database leak must not hand out working invite links.
    token_hash = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=10, choices=Role.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    used = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created"]


class ProjectAPIKey(AbstractAPIKey):
    """A per-project API key; djangorestframework-api-key stores only its hash, found by prefix."""

    class Scope(models.TextChoices):
        FULL = "full", "Full (every endpoint)"
        INVOKE = "invoke", "Invoke only"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.INVOKE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used = models.DateTimeField(null=True, blank=True)
    request_count = models.PositiveBigIntegerField(default=0)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "project API key"


class KeyUsage(models.Model):
    """Requests per API key per day (UTC), for the project's API page and the dashboard."""

    api_key = models.ForeignKey(ProjectAPIKey, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "day"], name="one_usage_row_per_key_day")]
        ordering = ["-day"]
