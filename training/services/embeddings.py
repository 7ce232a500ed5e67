"""Writes of the training app: embeddings (image features), computed idempotently and resumably."""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from labeling.models import Sample
from training.models import Embedding
from training.selectors import feature_store
from training.services.features import feature_store_catch_up

log = logging.getLogger(__name__)


def _missing_ids(project_id, backbone: str) -> list:
    done = Embedding.objects.filter(project_id=project_id, backbone=backbone).values("sample_id")
    return list(
        Sample.objects.filter(project_id=project_id)
        .exclude(pk__in=done)
        .order_by("created", "id")
        .values_list("pk", flat=True)
    )


def _read(sample: Sample) -> bytes:
    with default_storage.open(sample.image_name, "rb") as handle:
        return handle.read()


def _error_row(sample: Sample, project_id, backbone: str, exc: BaseException) -> Embedding:
    message = f"{type(exc).__name__}: {exc}"[:300]
    return Embedding(sample=sample, project_id=project_id, backbone=backbone, vector=b"", error=message)


def _embed_batch(
    embedder, samples: list[Sample], images: list[bytes], *, project_id, backbone: str, batch_size: int
) -> list[Embedding]:
    """Vectors for a batch; when the batch fails, image by image so one bad file fails only itself."""
    try:
        vectors = embedder.embed(images, batch_size=batch_size).astype(np.float16)
    except Exception:
        log.warning("embedding a batch of %d with %s failed; retrying one by one", len(images), backbone, exc_info=True)
    else:
        return [
            Embedding(sample=s, project_id=project_id, backbone=backbone, vector=v.tobytes())
            for s, v in zip(samples, vectors)
        ]
    rows = []
    for sample, data in zip(samples, images):
        try:
            (vector,) = embedder.embed([data], batch_size=1).astype(np.float16)
        except Exception as exc:  # undecodable file: an error row, not a task that fails forever
            log.warning("cannot embed %s with %s: %s", sample.image_name, backbone, exc)
            rows.append(_error_row(sample, project_id, backbone, exc))
        else:
            rows.append(Embedding(sample=sample, project_id=project_id, backbone=backbone, vector=vector.tobytes()))
    return rows


def _store(rows: list[Embedding]) -> int:
    """Insert rows whose samples still exist (a sample may be deleted while its batch is embedded)."""
    for attempt in range(2):
        alive = set(Sample.objects.filter(pk__in=[r.sample_id for r in rows]).values_list("pk", flat=True))
        rows = [r for r in rows if r.sample_id in alive]
        if not rows:
            return 0
        try:
            # ignore_conflicts: a second worker that embedded the same samples meanwhile is harmless.
            # Own atomic block: the FK check is deferred to its commit, where the error is caught.
            with transaction.atomic():
                Embedding.objects.bulk_create(rows, ignore_conflicts=True)
            return len(rows)
        except IntegrityError:  # deleted between the check and the insert: check again, once
            if attempt:
                raise
    return 0


def embeddings_compute(*, project_id, backbones: list[str] | None = None, batch_size: int | None = None) -> int:
    """Embed every sample of the project that lacks a vector; idempotent, resumable. Returns the count."""
    from training.embedders import embedder_get

    backbones = backbones or settings.PICTOR_BACKBONES
    batch_size = batch_size or settings.PICTOR_EMBED_BATCH
    written = 0
    for backbone in backbones:
        # One query for the work list (not one NOT IN scan per batch); samples uploaded after this
        # point are left to the follow-up run their upload scheduled.
        missing = _missing_ids(project_id, backbone)
        if not missing:
            continue
        embedder = embedder_get(backbone)
        store = feature_store(project_id=project_id, backbone=backbone)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            by_id = Sample.objects.in_bulk(chunk)
            batch = [by_id[pk] for pk in chunk if pk in by_id]  # deleted meanwhile: skipped
            images, ok, rows = [], [], []
            for sample in batch:
                try:
                    images.append(_read(sample))
                    ok.append(sample)
                except Exception as exc:  # a lost file must not block the rest of the project
                    log.warning("cannot read %s: %s", sample.image_name, exc)
                    rows.append(_error_row(sample, project_id, backbone, exc))
            if images:
                rows += _embed_batch(
                    embedder, ok, images, project_id=project_id, backbone=backbone, batch_size=batch_size
                )
            written += embeddings_store(project_id=project_id, backbone=backbone, rows=rows, store=store)
        with store.locked():
            store.ann_update()
    return written


def embeddings_store(*, project_id, backbone: str, rows: list[Embedding], store=None) -> int:
    """Write a batch of one backbone's rows and copy them into the feature store. Insert, commit
    and copy happen under the store's lock: no lower id commits after a copy passed it (the
    store's watermark only moves forward). Returns the rows written."""
    store = store or feature_store(project_id=project_id, backbone=backbone)
    with store.locked():
        written = _store(rows)
        feature_store_catch_up(store=store, project_id=project_id, backbone=backbone)
    return written
