"""Queue order: the active learner picks the next batch a labeler gets, with the quick model's help."""

from __future__ import annotations

import uuid

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from labeling.models import Lease, QueueBatch, Sample
from labeling.selectors import samples_unclaimed
from projects.models import Project
from training.data import aligned_features, labeled_set
from training.selectors import embedding_progress, feature_snapshot, uuid_keys
from training.ml import active, heads
from training.models import Embedding, ModelVersion
from training.quick import NotEnoughLabels, _check, _feature_parts, classic_pool, latest_quick_model, quick_predict

#: One batch of the active learner: what a labeler takes at once (the bench measures batches of 10);
#: the queue refreshes it at claim time once labels arrive, so it never needs to run ahead.
QUEUE_BATCH = 10


#: Past this many vectors the claim-time refresh runs in the background and batches are larger, so
#: labelers never wait for the ranking (bench/scale.py: ~1 s at 100k vectors, several at 1M).
SYNC_MAX_ROWS = 50_000
QUEUE_BATCH_LARGE = 100
#: Labeled samples the ranking refit (a model that missed the newest labels) uses at most.
RANKING_REFIT_MAX = 5000


def ranks_in_background(*, project_id) -> bool:
    snap = feature_snapshot(project_id=project_id, backbone=settings.PICTOR_BACKBONES[0])
    return snap is not None and snap.n > SYNC_MAX_ROWS


def queue_refresh(*, project_id, batch_size: int | None = None, in_request: bool = False) -> int:
    """Have the active learner pick the next batch to label; returns its size.

    Called after every quick retrain and, synchronously, by the queue at claim time when labels
    arrived after the stored batch. It never ranks with a model that missed labels: if the latest
    quick model was trained on fewer labels than exist now, a head with that model's recipe
    (features, l2) is refitted on the current labels for the ranking (one fit, ~0.1 s).
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or project.queue_strategy != Project.QueueStrategy.ACTIVE:
        return 0
    backbone = settings.PICTOR_BACKBONES[0]
    if not in_request:  # a worker: catch up with vectors embedded elsewhere first
        from training.services import feature_stores_catch_up

        feature_stores_catch_up(project_id=project.pk, backbones=settings.PICTOR_BACKBONES)
    snap = feature_snapshot(project_id=project.pk, backbone=backbone)
    if snap is None:
        return 0
    ids, X, mask, n_labeled = _ranking_pool(project=project, snap=snap)
    if not ids:
        return 0
    if mask.all():
        QueueBatch.objects.update_or_create(project=project, defaults={"sample_ids": [], "scores": [], "phase": "done"})
        return 0
    feats = {backbone: X}
    probs, thresholds, counts, version = None, None, None, None
    model = latest_quick_model(project)
    if model is not None:
        probs, thresholds, counts = _ranking_probs(project=project, model=model, ids=ids, n_labeled=n_labeled)
        version = model.version
    # Leased rows count as labeled for the ranking (nobody else may get them), but the phase and
    # the model only know real labels.
    size = max(QUEUE_BATCH if snap.n <= SYNC_MAX_ROWS else QUEUE_BATCH_LARGE, batch_size or 0)
    unranked = _unembedded_share(project=project, backbone=backbone, n_labeled=n_labeled)
    n_unranked = int(round(size * unranked))
    chosen, scores = active.queue_rank(
        features={backbone: feats[backbone]},
        labeled_mask=mask,
        probs=probs,
        multi_label=project.is_multi_label,
        thresholds=thresholds,
        batch_size=max(1, size - n_unranked),
        label_counts=counts,
    )
    batch_ids = [str(ids[i]) for i in chosen]
    batch_scores: list = [round(float(s), 4) for s in scores]
    if n_unranked:
        batch_ids, batch_scores = _with_unembedded(
            project=project, backbone=backbone, ids=batch_ids, scores=batch_scores, count=n_unranked
        )
    phase = active.phase(
        n_labeled=n_labeled,
        has_model=probs is not None,
        n_classes=probs.shape[1] if probs is not None else None,
        label_counts=counts,
    )
    QueueBatch.objects.update_or_create(
        project=project,
        defaults={
            "sample_ids": batch_ids,
            "scores": batch_scores,
            "phase": str(phase)[:20],
            "model_version": version,
        },
    )
    return len(batch_ids)


def _unembedded_share(*, project, backbone: str, n_labeled: int) -> float:
    """The share of the unlabeled samples that have no vector yet (0 once embedding has caught up);
    a vector that failed (an unreadable image) counts as done, as on the feature panel."""
    progress = embedding_progress(project_id=project.pk)
    total = progress["total"]
    pending = total - progress["per_backbone"].get(backbone, 0)
    if pending <= 0:
        return 0.0
    return min(1.0, pending / max(1, total - n_labeled))


def _with_unembedded(*, project, backbone: str, ids: list[str], scores: list, count: int) -> tuple[list, list]:
    """The ranked batch with ``count`` samples that have no vector yet spread evenly through it.

    The learner only sees what is embedded, and images are embedded in upload order: ranked alone,
    a batch taken while a folder-by-folder upload is being embedded would hold only the first
    folders' classes. Samples without a vector, in content-hash (random) order and unscored, keep
    the batch a draw from the whole pool, in proportion to the part the learner cannot see.
    """
    has_vector = Embedding.objects.filter(sample=OuterRef("pk"), backbone=backbone)
    extra = [
        str(pk)
        for pk in samples_unclaimed(project=project, now=timezone.now())
        .exclude(Exists(has_vector))
        .order_by("sha256")
        .values_list("pk", flat=True)[:count]
    ]
    # Evenly interleaved, so a labeler taking the first few of a large batch gets both kinds.
    keyed = [((n + 0.5) / len(ids), 0, sid, sc) for n, (sid, sc) in enumerate(zip(ids, scores))]
    keyed += [((n + 0.5) / len(extra), 1, sid, None) for n, sid in enumerate(extra)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in keyed], [t[3] for t in keyed]


def _ranking_pool(*, project, snap) -> tuple[list, np.ndarray, np.ndarray, int]:
    """(ids, float32 vectors, taken mask, labeled count) of what the learner ranks: the labeled and
    leased samples (at most PICTOR_QUEUE_POOL labeled ones, for coverage and density) and
    the unlabeled ones, all of them up to PICTOR_QUEUE_POOL, beyond that a uniform random
    subsample of the store's rows (its density is the pool's density)."""
    cap = settings.PICTOR_QUEUE_POOL
    rng = np.random.default_rng(0)
    labeled = list(Sample.objects.filter(project=project, labeled_at__isnull=False).values_list("pk", flat=True))
    n_labeled = len(labeled)
    excluded = set(labeled)
    lab_cap = settings.PICTOR_QUEUE_POOL
    if len(labeled) > lab_cap:
        labeled = [labeled[i] for i in np.sort(rng.choice(len(labeled), lab_cap, replace=False))]
    leased = list(
        Lease.objects.filter(project=project, expires__gt=timezone.now()).values_list("sample_id", flat=True)[:10_000]
    )
    taken_ids = list(dict.fromkeys(labeled + leased))
    # Candidate rows: a random draw with room for the labeled, deleted and duplicate rows it hits.
    want = cap + n_labeled + len(leased)
    cand = np.arange(snap.n) if snap.n <= want else np.sort(rng.choice(snap.n, min(snap.n, want), replace=False))
    cand_ids = [uuid.UUID(bytes=bytes(k).ljust(16, b"\0")) for k in snap.keys[cand]]
    # No liveness query for the candidates: a deleted sample's row (rare; compaction removes them)
    # costs a slot in the batch at most, and the claim only leases samples that exist.
    excluded.update(leased)
    unl_rows: dict = {}
    for r, sid in zip(cand.tolist(), cand_ids):
        if sid not in excluded:
            unl_rows[sid] = r  # the last row of a sample wins
    if len(unl_rows) > cap:
        keep = set(rng.choice(len(unl_rows), cap, replace=False).tolist())
        unl_rows = {sid: r for n, (sid, r) in enumerate(unl_rows.items()) if n in keep}
    taken_rows = snap.rows_for(uuid_keys(taken_ids))
    found = taken_rows >= 0
    ids = [sid for sid, ok in zip(taken_ids, found) if ok] + list(unl_rows)
    rows = np.concatenate([taken_rows[found], np.fromiter(unl_rows.values(), np.int64, len(unl_rows))])
    mask = np.zeros(len(ids), bool)
    mask[: int(found.sum())] = True
    return ids, snap.matrix(rows), mask, n_labeled


def _ranking_probs(*, project, model: ModelVersion, ids: list, n_labeled: int):
    """(probs aligned to ids, thresholds, label counts) from a model that knows every label."""
    thresholds = np.asarray(model.thresholds) if model.thresholds else None
    # A model fitted on a subsample knew every label it was drawn from (metrics "subsample").
    known = ((model.metrics or {}).get("subsample") or {}).get("of") or model.n_train
    if known < n_labeled:
        # only for ranking: a smaller stratified subsample keeps this refit around a second
        data = labeled_set(project=project, backbones=_feature_parts(model.features), max_samples=RANKING_REFIT_MAX)
        try:
            _check(data)
        except NotEnoughLabels:
            return None, None, None
        l2 = float((model.metrics or {}).get("l2") or 0.1)
        head = heads.refit_recipe(
            data.features,
            data.y,
            feature_key=model.features,
            l2=l2,
            multi_label=data.multi_label,
            n_classes=len(data.label_names),
            pool=classic_pool(project) if any(p in heads.CLASSIC for p in _feature_parts(model.features)) else None,
        )
        parts = _feature_parts(model.features)
        all_ids, feats = aligned_features(project_id=project.pk, backbones=parts, sample_ids=ids)
        if len(all_ids) != len(ids):
            return None, None, None
        Xall = heads.concat_features([feats[p] for p in parts]) if len(parts) > 1 else feats[parts[0]]
        order = {sid: n for n, sid in enumerate(all_ids)}
        probs = head.predict_proba(Xall)[[order[sid] for sid in ids]]
        y = data.y
        counts = (y.sum(axis=0) if data.multi_label else np.bincount(y, minlength=len(data.label_names))).astype(int)
        return (
            probs,
            thresholds if data.multi_label and thresholds is not None and len(thresholds) == probs.shape[1] else None,
            counts,
        )
    pred_ids, pred = quick_predict(model=model, sample_ids=ids)
    if len(pred_ids) != len(ids):
        return None, None, None
    order = {sid: n for n, sid in enumerate(pred_ids)}
    return pred[[order[sid] for sid in ids]], thresholds, _label_counts(model)


def _label_counts(model: ModelVersion) -> np.ndarray | None:
    support = (model.metrics or {}).get("per_label") or {}
    if not support:
        return None
    return np.array([int(support.get(n, {}).get("support", 0)) for n in model.label_names])
