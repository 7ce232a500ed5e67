"""Project roles, ordered: each role can do everything the ones below it can."""

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    LABELER = "labeler", "Labeler"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


RANK = {Role.VIEWER: 1, Role.LABELER: 2, Role.ADMIN: 3, Role.OWNER: 4}

DESCRIPTIONS = {
    Role.VIEWER: "reads samples, models and metrics",
    Role.LABELER: "also uploads and labels",
    Role.ADMIN: "also trains, deploys and manages API keys",
    Role.OWNER: "also manages members and deletes the project",
}


def at_least(role: str, minimum: str) -> bool:
    return RANK[Role(role)] >= RANK[Role(minimum)]
