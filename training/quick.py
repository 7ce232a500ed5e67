"""The quick model: a linear head on stored embeddings, retrained within a second of each label."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage


from labeling.models import Sample
from projects.models import Project
from training import services
from training.data import aligned_features, labeled_set, pool_rows
from training.ml import heads, metrics
from training.ml.features import FeatureKey
from training.models import ModelVersion, TrainingJob

log = logging.getLogger(__name__)


class NotEnoughLabels(Exception):
    pass


def _feature_parts(key: str) -> list[str]:
    return list(FeatureKey.parse(key))


def _check(data) -> None:
    if data.n < 2 or len(data.label_names) < 2:
        raise NotEnoughLabels("The quick model needs labeled examples of at least two labels (with computed features).")
    if not data.multi_label and len(set(data.y.tolist())) < 2:
        raise NotEnoughLabels("The quick model needs examples of at least two different labels.")


_EVALUATION_TEXT = {
    "cross_validation": "{k}-fold cross-validation (out-of-fold)",
    "leave_one_out": "leave-one-out cross-validation ({k} labeled samples)",
    "none": "too few labels to hold any out (no evaluation yet)",
}


def representation_label(key: str) -> str:
    """How the evaluation page names a feature key ("lite2+pixels" -> "EfficientNet-Lite2 + pixels (PCA)")."""
    names = {"lite0": "EfficientNet-Lite0", "lite2": "EfficientNet-Lite2", "pixels": "grey pixels (PCA)"}
    return " + ".join(names.get(p, p) for p in _feature_parts(key))


def fit_quick(*, data, pool: dict | None = None) -> heads.AutoMLResult:
    """The quick model's AutoML on a labeled set: what quick_train, the queue and the bench share."""
    return heads.automl_fit(
        data.features,
        data.y,
        multi_label=data.multi_label,
        n_classes=len(data.label_names),
        pool=pool,
        max_seconds=settings.PICTOR_QUICK_SECONDS,
    )


def classic_pool(project) -> dict:
    """All rows of the classic features (their PCA is fit on the whole pool, labeled or not)."""
    classic = [b for b in settings.PICTOR_BACKBONES if b in heads.CLASSIC]
    if not classic:
        return {}
    # a uniform sample of the pool has the pool's principal components
    return {b: pool_rows(project_id=project.pk, backbone=b) for b in classic}


def quick_train(*, job: TrainingJob) -> ModelVersion:
    project = job.project
    started = time.perf_counter()
    data = labeled_set(
        project=project, backbones=settings.PICTOR_BACKBONES, max_samples=settings.PICTOR_QUICK_MAX_TRAIN
    )
    _check(data)
    services.training_job_heartbeat(job=job, progress=0.2, message=f"fitting on {data.n} labeled samples")
    result = fit_quick(data=data, pool=classic_pool(project))
    thresholds = result.thresholds.tolist() if result.thresholds is not None else None
    honest = result.evaluation != "none"
    evaluation = metrics.evaluate(
        data.y, result.oof_probs, label_names=data.label_names, multi_label=data.multi_label, thresholds=thresholds
    )
    # a machine-readable mode and a sentence for the pages
    evaluation["evaluation"] = result.evaluation
    evaluation["evaluation_detail"] = _EVALUATION_TEXT[result.evaluation].format(k=result.k)
    # Past PICTOR_QUICK_MAX_TRAIN labels the head is fitted and evaluated on a stratified random
    # subsample: the figures are honest for that subsample, and say so.
    evaluation["subsample"] = {"used": data.n, "of": data.n_available} if data.n < data.n_available else None
    if data.n < data.n_available:
        evaluation["evaluation_detail"] += (
            f", on a stratified random subsample of {data.n} of {data.n_available} labeled samples"
        )
    evaluation["honest"] = honest
    evaluation["cv_table"] = result.cv_table
    evaluation["representation"] = result.feature_key
    evaluation["representation_label"] = representation_label(result.feature_key)
    evaluation["candidates_skipped"] = result.skipped
    evaluation["fit_seconds"] = round(result.seconds, 3)
    evaluation["l2"] = result.l2
    predictions = _predictions(data, result.oof_probs, thresholds)
    if not data.multi_label and honest:
        errors = metrics.likely_label_errors(data.y, result.oof_probs, threshold=0.8)
        evaluation["likely_errors"] = [
            {
                "sample_id": str(data.sample_ids[i]),
                "given": data.label_names[g],
                "predicted": data.label_names[p],
                "confidence": round(c, 4),
            }
            for i, g, p, c in errors[:200]
        ]
    head = result.head
    head.meta = {**head.meta, "features": result.feature_key, "label_names": data.label_names}
    model = services.model_version_create(
        project=project,
        mode=ModelVersion.Mode.QUICK,
        features=result.feature_key,
        label_names=data.label_names,
        thresholds=thresholds,
        metrics=evaluation,
        predictions=predictions,
        n_train=data.n,
        artifact=head.to_bytes(),
        suffix="npz",
    )
    from training import zeroshot

    zero, zero_scores = zeroshot.zero_shot_rescore(project=project)
    _deploy_automatic(project=project, model=model, data=data, result=result, zero=zero, zero_scores=zero_scores)
    services.quick_models_prune(project=project)
    log.info("quick model v%s for %s in %.2fs", model.version, project.pk, time.perf_counter() - started)
    return model


def _deploy_automatic(
    *, project, model: ModelVersion, data, result: heads.AutoMLResult, zero: ModelVersion | None, zero_scores: dict
) -> None:
    """Choose what answers while nobody chose by hand: the new quick model, or the label names'
    zero-shot version ``zero`` (current, or None) when the quick model does not beat it on the labeled
    samples (``zero_scores``: its label probabilities by sample id).

    Decided again at every retrain, whichever of the two answers now: a quick model that won by
    luck on ten labels does not shut the zero-shot model out for good (on hymenoptera that luck
    left a 0.75 model deployed where the zero-shot one scores 0.99). A pinned or full version stays.
    """
    deployed = ModelVersion.objects.filter(project=project, deployed=True).first()
    if not services.automatic_choice_open(deployed=deployed):
        return  # a person chose (checked again under the lock when deploying)
    beats = zero is None or _beats_zero_shot(data=data, result=result, zero=zero, scores=zero_scores)
    services.model_deploy_automatic(model=model if beats else zero)


def _beats_zero_shot(*, data, result: heads.AutoMLResult, zero: ModelVersion, scores: dict) -> bool:
    """The quick model's out-of-fold answers against the zero-shot's on the same labeled samples
    (training.ml.zeroshot.trained_beats_zero_shot)."""
    from training.ml import zeroshot as zs

    names = list(zero.label_names)
    if any(n not in names for n in data.label_names):
        return True  # the zero-shot version does not know these labels
    rows = [i for i, sid in enumerate(data.sample_ids) if sid in scores]
    if not rows:
        return True
    Z = np.stack([scores[data.sample_ids[i]] for i in rows])
    return zs.trained_beats_zero_shot(
        y=data.y[rows],
        trained=None if result.evaluation == "none" else result.oof_probs[rows],
        zero_shot=zs.label_columns(Z, [names.index(n) for n in data.label_names], multi_label=data.multi_label),
        multi_label=data.multi_label,
        thresholds=result.thresholds,
    )


def _predictions(data, probs: np.ndarray, thresholds) -> list:
    """Per sample: [id, true, predicted, confidence] (multi-label: label-name lists); the training
    set is already capped at PICTOR_QUICK_MAX_TRAIN."""
    out = []
    for r, sid in enumerate(data.sample_ids):
        p = probs[r]
        if data.multi_label:
            th = np.asarray(thresholds if thresholds is not None else [0.5] * len(p))
            true = [data.label_names[i] for i in np.flatnonzero(data.y[r])]
            pred = [data.label_names[i] for i in np.flatnonzero(p >= th)]
            out.append([str(sid), true, pred, round(float(p.max()), 4)])
        else:
            out.append(
                [
                    str(sid),
                    data.label_names[int(data.y[r])],
                    data.label_names[int(p.argmax())],
                    round(float(p.max()), 4),
                ]
            )
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
    if model is None or _zero_shot_answers(project):
        from training import zeroshot  # the label names' guess: before the first quick model, or better

        return zeroshot.suggestions(project, samples)
    if not samples:
        return {}
    ids, probs = quick_predict(model=model, sample_ids=[s.pk for s in samples])
    out = {}
    for sid, p in zip(ids, probs):
        i = int(np.argmax(p))
        out[sid] = {"label": model.label_names[i], "confidence": round(float(p[i]), 4)}
    return out


def _zero_shot_answers(project) -> bool:
    """The zero-shot version is deployed because no quick model beat it yet (see _deploy_automatic)."""
    from training import zeroshot

    zero = zeroshot.current_zero_shot(project)
    return zero is not None and zero.deployed


def check_trainable(*, project) -> None:
    """Raise NotEnoughLabels unless the project has what a quick model needs."""
    # a small stratified subsample answers "two labels with features?" as well as all of them
    _check(labeled_set(project=project, backbones=settings.PICTOR_BACKBONES, max_samples=2000))
