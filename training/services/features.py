"""Writes of the feature store: copy vectors from the database of record into the memory-mapped
store (training/ml/store.py), rebuild it when lost or bloated, delete it with its project.

The database keeps every vector (``Embedding.vector``): it is what backups hold and what every
machine's store catches up from. A store is a per-machine copy in row order of ``Embedding.id``;
its last copied id is its watermark, so a sync reads only newer rows.
"""

from __future__ import annotations

import logging
import shutil
import uuid

import numpy as np

from training.ml.store import FeatureStore
from training.models import Embedding
from training.selectors import feature_store

log = logging.getLogger(__name__)

_SYNC_CHUNK = 5000


def _copy(store: FeatureStore, *, project_id, backbone: str, after: int) -> int:
    rows = (
        Embedding.objects.filter(project_id=project_id, backbone=backbone, id__gt=after)
        .exclude(vector=b"")
        .order_by("id")
        .values_list("id", "sample_id", "vector")
    )
    copied = 0
    seqs, keys, vectors = [], [], []

    def flush():
        nonlocal copied
        if seqs:
            store.append(
                seqs=np.asarray(seqs, np.int64),
                keys=np.asarray(keys, dtype="S16"),
                vectors=np.stack(vectors),
            )
            copied += len(seqs)
            seqs.clear(), keys.clear(), vectors.clear()

    for pk, sample_id, vector in rows.iterator(chunk_size=_SYNC_CHUNK):
        seqs.append(pk)
        keys.append(sample_id.bytes)
        vectors.append(np.frombuffer(bytes(vector), dtype=np.float16))
        if len(seqs) >= _SYNC_CHUNK:
            flush()
    flush()
    return copied


def feature_store_catch_up(*, store: FeatureStore, project_id, backbone: str) -> int:
    """Append the database's vectors newer than the store's watermark (hold ``store.locked()``)."""
    snap = store.snapshot()
    return _copy(store, project_id=project_id, backbone=backbone, after=snap.last_seq if snap else 0)


def feature_store_sync(*, project_id, backbone: str, ann: bool = True) -> int:
    """Append the database's vectors newer than the store's watermark; returns how many.

    Writers insert and sync under the store's lock (``embeddings_compute``), so no row with a lower
    id can commit after a sync passed it on this machine.
    """
    store = feature_store(project_id=project_id, backbone=backbone)
    with store.locked():
        copied = feature_store_catch_up(store=store, project_id=project_id, backbone=backbone)
        if ann:
            store.ann_update()
    return copied


def feature_stores_catch_up(*, project_id, backbones: list[str]) -> int:
    """Before a worker reads a project's vectors: copy what the database has beyond this machine's
    stores (vectors embedded on another machine, a store lost here). One indexed query per
    backbone when nothing is missing. Returns the rows copied."""
    copied = 0
    for backbone in backbones:
        snap = feature_store(project_id=project_id, backbone=backbone).snapshot()
        newer = Embedding.objects.filter(project_id=project_id, backbone=backbone, id__gt=snap.last_seq if snap else 0)
        if newer.exclude(vector=b"").exists():
            copied += feature_store_sync(project_id=project_id, backbone=backbone)
    return copied


def feature_store_rebuild(*, project_id, backbone: str) -> int:
    """Write the store afresh from the database (lost, damaged, or full of deleted samples' rows)
    and swap it in; readers still holding the old files finish on them. Returns the row count."""
    store = feature_store(project_id=project_id, backbone=backbone)
    with store.locked():
        fresh = FeatureStore(store.root.with_name(store.root.name + ".new"))
        shutil.rmtree(fresh.root, ignore_errors=True)
        n = _copy(fresh, project_id=project_id, backbone=backbone, after=0)
        if n == 0:
            store.delete()
            return 0
        fresh.ann_update()
        store.replace_with(fresh)
    log.info("feature store %s/%s rebuilt: %d rows", project_id, backbone, n)
    return n


def feature_store_check(*, project_id, backbone: str) -> str:
    """The sweep's look at one store: rebuild when it lost rows the database has below its
    watermark (a lost file, a gap from a writer on another machine) or holds mostly deleted
    samples' rows; else catch up. Returns what it did."""
    store = feature_store(project_id=project_id, backbone=backbone)
    snap = store.snapshot()
    live = Embedding.objects.filter(project_id=project_id, backbone=backbone).exclude(vector=b"")
    if snap is None:
        if live.exists():
            feature_store_rebuild(project_id=project_id, backbone=backbone)
            return "rebuilt"
        return "empty"
    below = live.filter(id__lte=snap.last_seq).count()
    if below > snap.n or snap.n > 1.5 * below + 1000:
        feature_store_rebuild(project_id=project_id, backbone=backbone)
        return "rebuilt"
    return "synced" if feature_store_sync(project_id=project_id, backbone=backbone) else "current"


def feature_stores_delete(*, project_id) -> None:
    """Remove every store of a project (after the project itself is gone)."""
    from django.conf import settings

    root = settings.PICTOR_FEATURES_DIR / str(uuid.UUID(str(project_id)))
    shutil.rmtree(root, ignore_errors=True)
