"""Where sample files live in Django's storage (filesystem by default, S3 by settings)."""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

log = logging.getLogger(__name__)


def project_prefix(project_id) -> str:
    return f"projects/{project_id}"


def sample_names(*, project_id, sample_id, ext: str) -> tuple[str, str]:
    prefix = project_prefix(project_id)
    return f"{prefix}/samples/{sample_id}.{ext}", f"{prefix}/thumbs/{sample_id}.webp"


def files_write(items: list[tuple[str, bytes]]) -> list[str]:
    """Write each (name, data); on failure remove what was written and re-raise."""
    written: list[str] = []
    try:
        for name, data in items:
            # Storage may rename on collision; names carry a fresh UUID, so a rename means a bug.
            saved = default_storage.save(name, ContentFile(data))
            written.append(saved)
            if saved != name:
                raise RuntimeError(f"storage renamed {name} to {saved}")
    except BaseException:
        files_delete(written)
        raise
    return written


def files_delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # a missing file is fine; anything else is logged, not fatal
            log.warning("could not delete stored file %s", name, exc_info=True)


def tree_delete(prefix: str) -> None:
    """Delete everything stored under prefix (a project's folder)."""
    try:
        dirs, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    files_delete([f"{prefix}/{f}" for f in files])
    for d in dirs:
        tree_delete(f"{prefix}/{d}")
    path = getattr(default_storage, "path", None)
    if path is not None:
        import os

        try:
            os.rmdir(default_storage.path(prefix))
        except OSError:
            pass
