"""Assembling training data from the database: aligned feature matrices and label targets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from labeling.models import Sample, SampleLabel
from training.selectors import feature_snapshot, uuid_keys


def aligned_features(
    *, project_id, backbones: list[str], sample_ids: list | None = None
) -> tuple[list, dict[str, np.ndarray]]:
    """(ids, {backbone: float32 rows}) for the samples that have a vector for every backbone, read
    from the memory-mapped stores, in the first backbone's row order. ``sample_ids`` None means every
    sample in the first store (small projects and tests; product code passes the ids it needs)."""
    snaps = {b: feature_snapshot(project_id=project_id, backbone=b) for b in backbones}
    if any(snap is None for snap in snaps.values()):
        return [], {b: np.zeros((0, snap.dim if snap else 1280), np.float32) for b, snap in snaps.items()}
    first = snaps[backbones[0]]
    if sample_ids is None:
        keys = np.unique(np.asarray(first.keys))
        ids = [uuid.UUID(bytes=bytes(k).ljust(16, b"\0")) for k in keys]
    else:
        ids = [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in sample_ids]
        keys = uuid_keys(ids)
    rows = {b: snap.rows_for(keys) for b, snap in snaps.items()}
    ok = np.ones(len(ids), bool)
    for r in rows.values():
        ok &= r >= 0
    keep = np.flatnonzero(ok)
    keep = keep[np.argsort(rows[backbones[0]][keep], kind="stable")]
    ordered = [ids[i] for i in keep]
    return ordered, {b: snaps[b].matrix(rows[b][keep]) for b in backbones}


def pool_rows(*, project_id, backbone: str, cap: int = 20_000, seed: int = 0) -> np.ndarray:
    """Up to ``cap`` rows of a store, uniformly at random (for fitting a PCA on the whole pool)."""
    snap = feature_snapshot(project_id=project_id, backbone=backbone)
    if snap is None:
        return np.zeros((0, 1), np.float32)
    rows = (
        np.arange(snap.n) if snap.n <= cap else np.sort(np.random.default_rng(seed).choice(snap.n, cap, replace=False))
    )
    return snap.matrix(rows)


@dataclass
class LabeledSet:
    sample_ids: list
    features: dict[str, np.ndarray]
    y: np.ndarray  # class indices (single-label) or 0/1 matrix (multi-label)
    label_names: list[str]
    multi_label: bool
    #: labeled samples with features before subsampling (== n when all of them are used)
    n_available: int = 0

    @property
    def n(self) -> int:
        return len(self.sample_ids)


def labeled_set(*, project, backbones: list[str], max_samples: int | None = None, seed: int = 0) -> LabeledSet:
    """The labeled samples with features; with ``max_samples``, a random subsample stratified by
    (first) label beyond that many, so a quick retrain at 100k labels stays within seconds."""
    pairs = list(
        # through the small label table, not the samples: a sample has label rows exactly when it
        # is labeled (labeling keeps labeled_at and the rows in one transaction)
        SampleLabel.objects.filter(label__project=project).values_list("sample_id", "label__name")
    )
    by_sample: dict = {}
    for sid, name in pairs:
        by_sample.setdefault(sid, []).append(name)
    candidates = list(by_sample)
    n_available = len(candidates)
    if max_samples is not None and len(candidates) > max_samples:
        candidates = _stratified(candidates, by_sample, max_samples, seed)
    ids, feats = aligned_features(project_id=project.pk, backbones=backbones, sample_ids=candidates)
    label_names = sorted({n for sid in ids for n in by_sample[sid]})
    multi = project.is_multi_label
    y = targets(by_sample=by_sample, ids=ids, label_names=label_names, multi_label=multi)
    return LabeledSet(
        sample_ids=ids,
        features=feats,
        y=y,
        label_names=label_names,
        multi_label=multi,
        n_available=n_available if len(candidates) < n_available else len(ids),
    )


def _stratified(ids: list, by_sample: dict, n: int, seed: int) -> list:
    """``n`` of ``ids``, each (first) label keeping its share (and at least a few of its examples)."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for sid in ids:
        groups.setdefault(sorted(by_sample[sid])[0], []).append(sid)
    out = []
    for members in groups.values():
        take = min(len(members), max(5, round(n * len(members) / len(ids))))
        picked = rng.choice(len(members), take, replace=False)
        out += [members[i] for i in np.sort(picked)]
    return out


def targets(*, by_sample: dict, ids: list, label_names: list[str], multi_label: bool) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label) for `ids`, in `label_names` order."""
    index = {n: i for i, n in enumerate(label_names)}
    if not multi_label:
        return np.array([index[by_sample[sid][0]] for sid in ids], dtype=np.int64)
    y = np.zeros((len(ids), len(label_names)), np.float32)
    for r, sid in enumerate(ids):
        for n in by_sample[sid]:
            y[r, index[n]] = 1
    return y


def unlabeled_ids(*, project) -> set:
    return set(Sample.objects.filter(project=project, labeled_at__isnull=True).values_list("pk", flat=True))
