"""Full training: fine-tune the pretrained backbone end to end in a worker, evaluated on held-out data.

Split: train / validation (early stopping) / test (the reported metrics). The test split is never
seen by the fine-tune, and the quick model is fitted on the same train split and scored on the
same test split, so "better than the quick model" compares like with like.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from labeling.models import SampleLabel
from training import services
from training.data import aligned_features
from training.data import targets as data_targets
from training.ml import finetune as ft
from training.ml import heads, metrics
from training.ml.features import FeatureKey
from training.models import ModelVersion, TrainingJob
from training.quick import NotEnoughLabels


def _split(n: int, y_key: list, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 split (by the first label), every class in train when possible."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    groups: dict = {}
    for i, key in enumerate(y_key):
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        idx = list(rng.permutation(idx))
        n_test = int(round(len(idx) * 0.15)) if len(idx) >= 4 else 0
        n_val = int(round(len(idx) * 0.15)) if len(idx) >= 4 else (1 if len(idx) >= 3 else 0)
        test += idx[:n_test]
        val += idx[n_test : n_test + n_val]
        train += idx[n_test + n_val :]
    return np.array(sorted(train)), np.array(sorted(val)), np.array(sorted(test))


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as f:
        return f.read()


def full_train(*, job: TrainingJob, config: ft.FinetuneConfig | None = None) -> ModelVersion:
    project = job.project
    pairs = list(
        SampleLabel.objects.filter(sample__project=project, sample__labeled_at__isnull=False)
        .order_by("sample__created", "sample_id")
        .values_list("sample_id", "sample__image_name", "label__name")
    )
    by_sample: dict = {}
    names: dict = {}
    for sid, image_name, label in pairs:
        by_sample.setdefault(sid, []).append(label)
        names[sid] = image_name
    ids = list(by_sample)
    label_names = sorted({n for v in by_sample.values() for n in v})
    if len(label_names) < 2 or len(ids) < 8:
        raise NotEnoughLabels("Fine-tuning needs at least 8 labeled samples of at least two labels.")
    multi = project.is_multi_label
    Y = data_targets(by_sample=by_sample, ids=ids, label_names=label_names, multi_label=multi)
    targets = [row.tolist() for row in Y] if multi else [int(t) for t in Y]
    strat = [min(by_sample[sid]) for sid in ids]  # stratify by the (first) label
    train, val, test = _split(len(ids), strat, seed=int(job.pk.int % 2**31))
    if len(val) == 0 or len(test) == 0:
        raise NotEnoughLabels("Fine-tuning needs a few labeled samples of every label to hold some out.")

    services.training_job_heartbeat(job=job, progress=0.02, message="reading images")
    images = {sid: _read(names[sid]) for sid in ids}
    item = lambda i: (images[ids[i]], targets[i])  # noqa: E731
    config = config or ft.FinetuneConfig(
        backbone=settings.PICTOR_FINETUNE_BACKBONE,
        max_seconds=settings.PICTOR_FINETUNE_SECONDS,
        epochs=settings.PICTOR_FINETUNE_EPOCHS,
        resolution=settings.PICTOR_FINETUNE_RESOLUTION or None,
    )

    def progress(p: dict) -> None:
        entry = {k: p.get(k) for k in ("epoch", "epochs", "loss", "val_accuracy", "val_loss", "phase")}
        msg = f"epoch {p.get('epoch')}/{p.get('epochs')}"
        if p.get("val_accuracy") is not None:
            msg += f" · validation accuracy {p['val_accuracy']:.3f}"
        new_epoch = (
            p.get("phase") == "validated" or p.get("val_accuracy") is not None and p.get("step") == p.get("steps")
        )
        services.training_job_heartbeat(
            job=job,
            progress=0.05 + 0.85 * float(p.get("progress") or 0),
            message=msg,
            history_entry=entry if new_epoch else None,
        )

    result = ft.finetune(
        train_items=[item(i) for i in train],
        val_items=[item(i) for i in val],
        num_classes=len(label_names),
        multi_label=multi,
        config=config,
        progress=progress,
        should_stop=lambda: services.training_job_cancel_requested(job=job),
    )
    # should_stop is polled only inside the training loop: a cancel that arrives after its last
    # step must still win over storing a model version.
    _stop_if_cancelled(job)
    services.training_job_heartbeat(job=job, progress=0.92, message="evaluating on held-out samples")
    test_probs = ft.predict_probabilities(
        result.model, [images[ids[i]] for i in test], resolution=result.resolution, multi_label=multi
    ).astype(np.float32)
    y_test = Y[test]
    evaluation = metrics.evaluate(y_test, test_probs, label_names=label_names, multi_label=multi)
    evaluation["evaluation"] = f"held-out test split of {len(test)} samples (not used for training or early stopping)"
    evaluation["honest"] = True
    evaluation["history"] = result.history
    evaluation["stop_reason"] = result.stop_reason
    evaluation["train_seconds"] = round(result.seconds, 1)
    evaluation["split"] = {"train": len(train), "validation": len(val), "test": len(test)}
    evaluation["baseline_quick"] = _quick_baseline(project, ids, Y, train, test, label_names, multi)
    base = evaluation["baseline_quick"]
    evaluation["better_than_quick"] = bool(
        base
        and evaluation["accuracy"] is not None
        and base.get("accuracy") is not None
        and evaluation["accuracy"] > base["accuracy"]
    )
    predictions = []
    for r, i in enumerate(test):
        p = test_probs[r]
        if multi:
            predictions.append(
                [
                    str(ids[i]),
                    by_sample[ids[i]],
                    [label_names[j] for j in np.flatnonzero(p >= 0.5)],
                    round(float(p.max()), 4),
                ]
            )
        else:
            predictions.append(
                [str(ids[i]), label_names[int(Y[i])], label_names[int(p.argmax())], round(float(p.max()), 4)]
            )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        ft.export_classifier_onnx(result.model, path, result.resolution, multi_label=multi)
        artifact = path.read_bytes()
    _stop_if_cancelled(job)
    return services.model_version_create(
        project=project,
        mode=ModelVersion.Mode.FULL,
        features=f"{result.backbone}@{result.resolution}",
        label_names=label_names,
        thresholds=[0.5] * len(label_names) if multi else None,
        metrics=evaluation,
        predictions=predictions,
        n_train=len(train),
        artifact=artifact,
        suffix="onnx",
    )


def _stop_if_cancelled(job: TrainingJob) -> None:
    if services.training_job_cancel_requested(job=job):
        raise ft.Cancelled("fine-tuning cancelled")


def _quick_baseline(project, ids, Y, train, test, label_names, multi) -> dict | None:
    """The quick model's recipe fitted on the same train split, scored on the same test split."""
    fids, feats = aligned_features(project_id=project.pk, backbones=settings.PICTOR_BACKBONES, sample_ids=ids)
    if len(fids) != len(ids):
        return None
    order = {sid: n for n, sid in enumerate(fids)}
    rows = np.array([order[sid] for sid in ids])
    tr, te = rows[train], rows[test]
    # the quick model's own recipe: same candidates, same PCA pool for the classic features, same cost cap
    pool = {k: v for k, v in feats.items() if k in heads.CLASSIC}
    result = heads.automl_fit(
        {k: v[tr] for k, v in feats.items()},
        Y[train],
        multi_label=multi,
        n_classes=len(label_names),
        pool=pool or None,
        max_seconds=settings.PICTOR_QUICK_SECONDS,
    )
    parts = list(FeatureKey.parse(result.feature_key))
    Xte = heads.concat_features([feats[p][te] for p in parts]) if len(parts) > 1 else feats[parts[0]][te]
    probs = result.head.predict_proba(Xte)
    m = metrics.evaluate(Y[test], probs, label_names=label_names, multi_label=multi, thresholds=result.thresholds)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "features": result.feature_key}
