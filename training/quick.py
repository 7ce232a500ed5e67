"""The quick model: a linear head on stored embeddings, retrained within a second of each label."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from django.utils import timezone

from labeling.models import Lease, QueueBatch, Sample
from projects.models import Project
from training import services
from training.data import aligned_features, labeled_set
from training.ml import active, heads, metrics
from training.ml.features import FeatureKey
from training.models import ModelVersion, TrainingJob

log = logging.getLogger(__name__)

QUEUE_BATCH = 20


class NotEnoughLabels(Exception):
    pass


def _feature_parts(key: str) -> list[str]:
    return list(FeatureKey.parse(key))


def _check(data) -> None:
    if data.n < 2 or len(data.label_names) < 2:
        raise NotEnoughLabels("The quick model needs labeled examples of at least two labels (with computed features).")
    if not data.multi_label and len(set(data.y.tolist())) < 2:
        raise NotEnoughLabels("The quick model needs examples of at least two different labels.")


def quick_train(*, job: TrainingJob) -> ModelVersion:
    project = job.project
    started = time.perf_counter()
    data = labeled_set(project=project, backbones=settings.PICTOR_BACKBONES)
    _check(data)
    services.training_job_heartbeat(job=job, progress=0.2, message=f"fitting on {data.n} labeled samples")
    result = heads.automl_fit(data.features, data.y, multi_label=data.multi_label, n_classes=len(data.label_names))
    thresholds = result.thresholds.tolist() if result.thresholds is not None else None
    honest = result.k >= 2
    evaluation = metrics.evaluate(
        data.y, result.oof_probs, label_names=data.label_names, multi_label=data.multi_label, thresholds=thresholds
    )
    evaluation["evaluation"] = f"{result.k}-fold cross-validation (out-of-fold)" if honest else "too few labels to hold any out"
    evaluation["honest"] = honest
    evaluation["cv_table"] = result.cv_table
    evaluation["fit_seconds"] = round(result.seconds, 3)
    predictions = _predictions(data, result.oof_probs, thresholds)
    if not data.multi_label and honest:
        errors = metrics.likely_label_errors(data.y, result.oof_probs, threshold=0.8)
        evaluation["likely_errors"] = [
            {"sample_id": str(data.sample_ids[i]), "given": data.label_names[g], "predicted": data.label_names[p], "confidence": round(c, 4)}
            for i, g, p, c in errors[:200]
        ]
    head = result.head
    head.meta = {**head.meta, "features": result.feature_key, "label_names": data.label_names}
    model = services.model_version_create(
        project=project, mode=ModelVersion.Mode.QUICK, features=result.feature_key, label_names=data.label_names,
        thresholds=thresholds, metrics=evaluation, predictions=predictions, n_train=data.n,
        artifact=head.to_bytes(), suffix="npz",
    )
    deployed = ModelVersion.objects.filter(project=project, deployed=True).first()
    if deployed is None or (deployed.mode == ModelVersion.Mode.QUICK and not deployed.pinned):
        services.model_deploy(model=model, pinned=False)
    services.quick_models_prune(project=project)
    log.info("quick model v%s for %s in %.2fs", model.version, project.pk, time.perf_counter() - started)
    return model


def _predictions(data, probs: np.ndarray, thresholds) -> list:
    """Per sample: [id, true, predicted, confidence] (multi-label: label-name lists), capped."""
    out = []
    for r, sid in enumerate(data.sample_ids[:20000]):
        p = probs[r]
        if data.multi_label:
            th = np.asarray(thresholds if thresholds is not None else [0.5] * len(p))
            true = [data.label_names[i] for i in np.flatnonzero(data.y[r])]
            pred = [data.label_names[i] for i in np.flatnonzero(p >= th)]
            out.append([str(sid), true, pred, round(float(p.max()), 4)])
        else:
            out.append([str(sid), data.label_names[int(data.y[r])], data.label_names[int(p.argmax())], round(float(p.max()), 4)])
    return out


# ----------------------------------------------------------------------------- prediction


_heads_lock = threading.Lock()
_heads: dict = {}


def head_load(model: ModelVersion) -> heads.LinearHead:
    with _heads_lock:
        head = _heads.get(model.pk)
    if head is None:
        with default_storage.open(model.artifact_name, "rb") as f:
            head = heads.LinearHead.from_bytes(f.read())
        with _heads_lock:
            _heads[model.pk] = head
            while len(_heads) > 64:
                _heads.pop(next(iter(_heads)))
    return head


def latest_quick_model(project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, mode=ModelVersion.Mode.QUICK).order_by("-version").first()


def quick_predict(*, model: ModelVersion, sample_ids: list | None = None) -> tuple[list, np.ndarray]:
    """(ids, probabilities) of a quick model for samples with stored vectors (all when ids is None)."""
    parts = _feature_parts(model.features)
    ids, feats = aligned_features(project_id=model.project_id, backbones=parts, sample_ids=sample_ids)
    if not ids:
        return [], np.zeros((0, len(model.label_names)), np.float32)
    X = heads.concat_features([feats[p] for p in parts]) if len(parts) > 1 else feats[parts[0]]
    return ids, head_load(model).predict_proba(X)


def suggestions(project: Project, samples: list[Sample]) -> dict:
    model = latest_quick_model(project)
    if model is None or not samples:
        return {}
    ids, probs = quick_predict(model=model, sample_ids=[s.pk for s in samples])
    out = {}
    for sid, p in zip(ids, probs):
        i = int(np.argmax(p))
        out[sid] = {"label": model.label_names[i], "confidence": round(float(p[i]), 4)}
    return out


# ----------------------------------------------------------------------------- queue order


def queue_refresh(*, project_id) -> int:
    """Have the active learner pick the next batch to label; returns its size."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None or project.queue_strategy != Project.QueueStrategy.ACTIVE:
        return 0
    backbone = settings.PICTOR_BACKBONES[0]
    ids, feats = aligned_features(project_id=project.pk, backbones=[backbone])
    if not ids:
        return 0

    labeled = set(Sample.objects.filter(project=project, labeled_at__isnull=False).values_list("pk", flat=True))
    # Leased samples are someone's already: the batch should hold only what nobody is looking at.
    taken = labeled | set(Lease.objects.filter(project=project, expires__gt=timezone.now()).values_list("sample_id", flat=True))
    mask = np.array([sid in taken for sid in ids])
    if mask.all():
        QueueBatch.objects.update_or_create(project=project, defaults={"sample_ids": [], "scores": [], "phase": "done"})
        return 0
    probs, thresholds, counts, version = None, None, None, None
    model = latest_quick_model(project)
    if model is not None:
        pred_ids, pred = quick_predict(model=model, sample_ids=ids)
        if len(pred_ids) == len(ids):
            order = {sid: n for n, sid in enumerate(pred_ids)}
            probs = pred[[order[sid] for sid in ids]]
            thresholds = np.asarray(model.thresholds) if model.thresholds else None
            counts = _label_counts(model)
            version = model.version
    chosen, scores = active.rank(
        embeddings=feats[backbone], labeled_mask=mask, probs=probs, multi_label=project.is_multi_label,
        thresholds=thresholds, batch_size=QUEUE_BATCH, strategy="active", label_counts=counts,
    )
    phase = active.phase(
        n_labeled=len(labeled), has_model=probs is not None,
        n_classes=probs.shape[1] if probs is not None else None, label_counts=counts,
    )
    QueueBatch.objects.update_or_create(
        project=project,
        defaults={
            "sample_ids": [str(ids[i]) for i in chosen],
            "scores": [round(float(s), 4) for s in scores],
            "phase": str(phase)[:20],
            "model_version": version,
        },
    )
    return len(chosen)


def _label_counts(model: ModelVersion) -> np.ndarray | None:
    support = (model.metrics or {}).get("per_label") or {}
    if not support:
        return None
    return np.array([int(support.get(n, {}).get("support", 0)) for n in model.label_names])


def check_trainable(*, project) -> None:
    """Raise NotEnoughLabels unless the project has what a quick model needs."""
    _check(labeled_set(project=project, backbones=settings.PICTOR_BACKBONES))

