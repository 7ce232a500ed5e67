"""Assembling training data from the database: aligned feature matrices and label targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.models import Sample, SampleLabel
from training.selectors import embedding_matrix


def aligned_features(
    *, project_id, backbones: list[str], sample_ids: list | None = None
) -> tuple[list, dict[str, np.ndarray]]:
    """(ids, {backbone: rows}) for the samples that have a vector for every backbone, same row order."""
    per = {b: embedding_matrix(project_id=project_id, backbone=b) for b in backbones}
    common = None
    for ids, _ in per.values():
        common = set(ids) if common is None else common & set(ids)
    if sample_ids is not None:
        common &= set(sample_ids)
    first_ids = per[backbones[0]][0]
    ordered = [i for i in first_ids if i in common]
    feats = {}
    for b, (ids, matrix) in per.items():
        index = {sid: n for n, sid in enumerate(ids)}
        feats[b] = (
            matrix[[index[i] for i in ordered]]
            if ordered
            else np.zeros((0, matrix.shape[1] if matrix.ndim == 2 else 1280), np.float32)
        )
    return ordered, feats


@dataclass
class LabeledSet:
    sample_ids: list
    features: dict[str, np.ndarray]
    y: np.ndarray  # class indices (single-label) or 0/1 matrix (multi-label)
    label_names: list[str]
    multi_label: bool

    @property
    def n(self) -> int:
        return len(self.sample_ids)


def labeled_set(*, project, backbones: list[str]) -> LabeledSet:
    pairs = list(
        SampleLabel.objects.filter(sample__project=project, sample__labeled_at__isnull=False).values_list(
            "sample_id", "label__name"
        )
    )
    by_sample: dict = {}
    for sid, name in pairs:
        by_sample.setdefault(sid, []).append(name)
    ids, feats = aligned_features(project_id=project.pk, backbones=backbones, sample_ids=list(by_sample))
    label_names = sorted({n for sid in ids for n in by_sample[sid]})
    multi = project.is_multi_label
    y = targets(by_sample=by_sample, ids=ids, label_names=label_names, multi_label=multi)
    return LabeledSet(sample_ids=ids, features=feats, y=y, label_names=label_names, multi_label=multi)


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
