"""The zero-shot model: answers from the label names alone, before anything is labeled.

Every label name maps to ImageNet-1k classes through WordNet (training.ml.zeroshot); when all of a
project's labels (two at least) map, a "zero_shot" model version sums the backbone's ImageNet
softmax over each label's classes. It is deployed while nothing else is, and after that whenever a
quick retrain does not beat it (training.quick._deploy_automatic); it gives suggestions from the
stored vectors, and is scored on every labeled sample (it never trained on any, so that is a held-out
evaluation). As a cold-start prior for the queue it measured worse than typicality alone
(bench/zero_shot.py), so the queue does not use it.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from labeling.models import Label, SampleLabel
from projects.models import Project
from training import services
from training.data import aligned_features
from training.ml import backbone as bb
from training.ml import metrics
from training.ml import zeroshot as zs
from training.models import ModelVersion

log = logging.getLogger(__name__)

MODE = ModelVersion.Mode.ZERO_SHOT


def zero_shot_backbone() -> str | None:
    """The backbone whose ImageNet head answers: Lite2 (the stronger one) when its vectors are computed."""
    for name in ("lite2", "lite0"):
        if name in settings.PICTOR_BACKBONES:
            return name
    return None


def label_mappings(*, project: Project) -> list[tuple[str, zs.Mapping | None]]:
    """(label name, its ImageNet mapping or None) for every label of the project, by name."""
    names = sorted(Label.objects.filter(project=project).values_list("name", flat=True))
    return [(n, zs.label_map(n)) for n in names]


def latest_zero_shot(project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, mode=MODE).order_by("-version").first()


def current_zero_shot(project) -> ModelVersion | None:
    """The newest zero-shot version, if it knows exactly the project's labels as they are now."""
    model = latest_zero_shot(project)
    if model is None:
        return None
    names = sorted(Label.objects.filter(project=project).values_list("name", flat=True))
    return model if list(model.label_names) == names else None


# ----------------------------------------------------------------------------- the head


_lock = threading.Lock()
_heads: dict = {}


def head_load(model: ModelVersion) -> zs.ZeroShotHead:
    with _lock:
        head = _heads.get(model.pk)
    if head is None:
        with default_storage.open(model.artifact_name, "rb") as f:
            meta = zs.groups_from_bytes(f.read())
        W, b = bb.imagenet_classifier(meta["backbone"])
        head = zs.ZeroShotHead(
            W=W, b=b, groups=meta["groups"], multi_label=meta["multi_label"], scale=zs.FEATURE_SCALE[meta["backbone"]]
        )
        with _lock:
            _heads[model.pk] = head
            while len(_heads) > 64:
                _heads.pop(next(iter(_heads)))
    return head


def stored_predict(*, model: ModelVersion, sample_ids: list | None = None) -> tuple[list, np.ndarray]:
    """(ids, label probabilities) for samples with a stored vector of the model's backbone."""
    ids, feats = aligned_features(project_id=model.project_id, backbones=[model.features], sample_ids=sample_ids)
    if not ids:
        return [], np.zeros((0, len(model.label_names)), np.float32)
    return ids, head_load(model).predict_proba(feats[model.features])


def suggestions(project, samples) -> dict:
    """Before the first quick model: the zero-shot guess for each sample that has its vector."""
    model = current_zero_shot(project)
    if model is None or not samples:
        return {}
    ids, probs = stored_predict(model=model, sample_ids=[s.pk for s in samples])
    out = {}
    for sid, p in zip(ids, probs):
        i = int(np.argmax(p))
        out[sid] = {"label": model.label_names[i], "confidence": round(float(p[i]), 4)}
    return out


# ----------------------------------------------------------------------------- evaluation


def _evaluation(*, model: ModelVersion, project) -> tuple[dict, list, np.ndarray | None]:
    """Metrics on every labeled sample whose labels the version knows (none of them was trained on),
    with those samples' ids and label probabilities."""
    names = list(model.label_names)
    index = {n: i for i, n in enumerate(names)}
    by_sample: dict = {}
    for sid, name in SampleLabel.objects.filter(sample__project=project, sample__labeled_at__isnull=False).values_list(
        "sample_id", "label__name"
    ):
        by_sample.setdefault(sid, []).append(name)
    known = [sid for sid, labels in by_sample.items() if all(n in index for n in labels)]
    ids, probs = stored_predict(model=model, sample_ids=known) if known else ([], None)
    base = {
        "evaluation": "labeled_samples",
        "honest": True,
        "n_evaluated": len(ids),
        "zero_shot": {"backbone": model.features},
    }
    if not ids:
        empty = metrics.evaluate(
            np.zeros(0, np.int64) if not project.is_multi_label else np.zeros((0, len(names)), np.float32),
            np.zeros((0, len(names)), np.float32),
            label_names=names,
            multi_label=project.is_multi_label,
            thresholds=model.thresholds,
        )
        return (
            {
                **empty,
                **base,
                "accuracy": None,
                "macro_f1": None,
                "evaluation_detail": "no labeled samples yet: not evaluated",
            },
            [],
            None,
        )
    if project.is_multi_label:
        y = np.zeros((len(ids), len(names)), np.float32)
        for r, sid in enumerate(ids):
            for n in by_sample[sid]:
                y[r, index[n]] = 1
    else:
        y = np.array([index[by_sample[sid][0]] for sid in ids], np.int64)
    out = metrics.evaluate(y, probs, label_names=names, multi_label=project.is_multi_label, thresholds=model.thresholds)
    detail = f"all {len(ids)} labeled samples (the zero-shot model never trains on labels)"
    return {**out, **base, "evaluation_detail": detail}, ids, probs


def _evaluate(*, model: ModelVersion) -> tuple[ModelVersion, list, np.ndarray | None]:
    project = Project.objects.get(pk=model.project_id)
    evaluation, ids, probs = _evaluation(model=model, project=project)
    evaluation["zero_shot"] = {**(model.metrics or {}).get("zero_shot", {}), **evaluation["zero_shot"]}
    return services.model_metrics_update(model=model, metrics=evaluation), ids, probs


def zero_shot_evaluate(*, model: ModelVersion) -> ModelVersion:
    """Score the version on the labels that exist now."""
    return _evaluate(model=model)[0]


def zero_shot_rescore(*, project) -> tuple[ModelVersion | None, dict]:
    """After a quick retrain: the current zero-shot version scored on the labels that exist now (its
    accuracy follows the labels), and its label probabilities by labeled sample id, which the retrain
    compares its own model with (training.quick._deploy_automatic). (None, {}) without a version."""
    model = current_zero_shot(project)
    if model is None:
        return None, {}
    model, ids, probs = _evaluate(model=model)
    return model, dict(zip(ids, probs)) if ids else {}


# ----------------------------------------------------------------------------- the version


def zero_shot_sync(*, project_id) -> ModelVersion | None:
    """Make (and, while nothing else is deployed, deploy) a zero-shot version for the current labels;
    safe to run twice. Returns the current zero-shot version, or None when the labels don't all map."""
    project = Project.objects.filter(pk=project_id).first()
    backbone = zero_shot_backbone()
    if project is None or backbone is None:
        return None
    pairs = label_mappings(project=project)
    mappings = [m for _, m in pairs]
    groups = zs.class_groups(mappings)
    if groups is None:
        return None
    names = [n for n, _ in pairs]
    model = latest_zero_shot(project)
    same = (
        model is not None
        and list(model.label_names) == names
        and model.features == backbone
        and (model.metrics or {}).get("zero_shot", {}).get("groups") == groups
    )
    if not same:
        thresholds = [zs.MULTI_LABEL_THRESHOLD] * len(names) if project.is_multi_label else None
        model = services.model_version_create(
            project=project,
            mode=MODE,
            features=backbone,
            label_names=names,
            thresholds=thresholds,
            metrics={"zero_shot": {"groups": groups, "backbone": backbone}},
            predictions=[],
            n_train=0,
            artifact=zs.groups_to_bytes(groups=groups, backbone=backbone, multi_label=project.is_multi_label),
            suffix="json",
        )
        model = zero_shot_evaluate(model=model)
    services.zero_shot_deploy_if_idle(model=model)
    services.zero_shot_models_prune(project=project, keep=model)
    return model
