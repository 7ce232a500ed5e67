"""Full training: a recipe search over fine-tunes of the pretrained backbones, in a worker, on held-out data.

Split: train / validation (early stopping and recipe selection) / test (the reported metrics). The
test split is never seen by the search, and the quick model is fitted on the same train split and
scored on the same test split, so "better than the quick model" compares like with like.

Beside the quick head, a multi-layer probe (``training.ml.layers``: the backbones' middle stages
pooled with their final features, l2 by cross-validation) is fitted on the same train split; the one
of the two with the lower out-of-fold log loss there is "the probe". The search
(``training.ml.recipes``) also considers blends of each fine-tune with the probe (its validation
probabilities); when "the quick head alone" wins on validation, the stored model says so and is
never offered as better. The stored artifact is one ONNX graph
(``training.ml.ensemble.BlendGraph``) whatever won, and the reported test metrics are that graph's.

The user's quick model learns from every label; a full model trained on 70% of them would start
behind it. So once selected and scored, the recipe is replayed on all labels (``recipes.refit``:
same backbone, stages, lr and epoch count; the quick head refitted with its features and l2) and
that graph is stored, the split's test metrics standing as its estimate, as cross-validation does
for the quick model. A refit the measured costs say cannot fit ``PICTOR_FINETUNE_REFIT_SECONDS``
is skipped and the split's graph stored; the metrics' "refit" says which happened.
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
from training.ml import backbone as bb
from training.ml import heads, layers, metrics, recipes
from training.ml.ensemble import BlendGraph, QuickGraph, export_probabilities_onnx, serving_resolution
from training.ml.features import FeatureKey
from training.models import ModelVersion, TrainingJob
from training.quick import NotEnoughLabels


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as f:
        return f.read()


def full_train(*, job: TrainingJob, config: recipes.SearchConfig | None = None) -> ModelVersion:
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
    train, val, test = recipes.stratified_split(strat, seed=int(job.pk.int % 2**31))
    if len(val) == 0 or len(test) == 0:
        raise NotEnoughLabels("Fine-tuning needs a few labeled samples of every label to hold some out.")

    services.training_job_heartbeat(job=job, progress=0.02, message="reading images")
    images = {sid: _read(names[sid]) for sid in ids}
    item = lambda i: (images[ids[i]], targets[i])  # noqa: E731
    config = config or recipes.SearchConfig(
        backbones=tuple(settings.PICTOR_FINETUNE_BACKBONES),
        max_seconds=settings.PICTOR_FINETUNE_SECONDS,
        epochs=settings.PICTOR_FINETUNE_EPOCHS,
        resolution=settings.PICTOR_FINETUNE_RESOLUTION or None,
    )
    quick = _quick_fit(project, ids, Y, train, val, test, label_names, multi)
    services.training_job_heartbeat(job=job, progress=0.03, message="multi-layer features of the labeled images")
    probe = _probe_choice(job, quick, [images[sid] for sid in ids], Y, train, val, len(label_names), multi, config)

    def progress(p: dict) -> None:
        entry = {k: p.get(k) for k in ("candidate", "epoch", "epochs", "loss", "val_accuracy", "val_loss", "phase")}
        if p.get("phase") == "caching":
            msg = f"epoch 0 · caching the frozen stages of {p.get('candidate')}"
        else:
            msg = f"epoch {p.get('epoch')}/{p.get('epochs')} · {p.get('candidate')}"
        if p.get("val_accuracy") is not None:
            msg += f" · validation accuracy {p['val_accuracy']:.3f}"
        services.training_job_heartbeat(
            job=job,
            progress=0.05 + 0.85 * float(p.get("progress") or 0),
            message=msg,
            history_entry=entry if p.get("phase") == "validated" else None,
        )

    result = recipes.search(
        train_items=[item(i) for i in train],
        val_items=[item(i) for i in val],
        num_classes=len(label_names),
        multi_label=multi,
        quick_val_probabilities=probe["val_probs"] if probe else None,
        probe_name=probe["name"] if probe else "quick head",
        config=config,
        progress=progress,
        should_stop=lambda: services.training_job_cancel_requested(job=job),
    )
    # should_stop is polled only inside the training loop: a cancel that arrives after its last
    # step must still win over storing a model version.
    _stop_if_cancelled(job)
    services.training_job_heartbeat(job=job, progress=0.92, message="exporting and evaluating on held-out samples")
    quick_graph = _quick_graph(probe, probe["head"] if probe else None, result, multi)
    graph = _blend(result.model, result, quick_graph, multi)
    artifact, test_probs = _export(graph, [images[ids[i]] for i in test])
    y_test = Y[test]
    evaluation = metrics.evaluate(y_test, test_probs, label_names=label_names, multi_label=multi)
    # The served model learns from every label, as the quick model does: the selected recipe is
    # replayed on all of them (training.ml.recipes.refit). The split's model stays the estimate.
    all_items = [item(i) for i in range(len(ids))]
    refitted, refit_info = _refit(job, result, probe, all_items, Y, len(label_names), multi, config)
    if refitted is not None:
        net, quick_head = refitted
        quick_graph = _quick_graph(probe, quick_head, result, multi)
        graph = _blend(net, result, quick_graph, multi)
        artifact, _ = _export(graph, [])
    n_train = len(ids) if refitted is not None else len(train)
    # "not used for training" is only true of the split's model: the served one saw those samples.
    evaluation["evaluation"] = (
        f"held-out test split of {len(test)} samples, scored by the same recipe trained without them "
        f"(the served model was then retrained on all {len(ids)} labels)"
        if refitted is not None
        else f"held-out test split of {len(test)} samples (not used for training or early stopping)"
    )
    evaluation["evaluation_detail"] = (
        f"a held-out test split of {len(test)} samples, by the same recipe trained on {len(train)} others "
        f"(selected on {len(val)} more); the served model was then retrained on all {len(ids)} labels"
        if refitted is not None
        else f"a held-out test split of {len(test)} samples (not used for training or early stopping); the "
        f"retraining on all {len(ids)} labels did not fit its time budget, so the served model is this one, "
        f"trained on {len(train)}"
    )
    evaluation["honest"] = True
    evaluation["history"] = result.history
    evaluation["stop_reason"] = result.stop_reason
    evaluation["train_seconds"] = round(result.seconds, 1)
    evaluation["split"] = {"train": len(train), "validation": len(val), "test": len(test)}
    evaluation["refit"] = refit_info
    evaluation["recipe"] = {
        "name": result.recipe,
        "backbone": result.backbone,
        "resolution": result.resolution,
        "input_resolution": graph.input_resolution,
        "tta": result.tta,
        "finetune_weight": result.weight,
        "quick_alone": result.weight == 0.0 and (probe is None or probe["kind"] == "quick"),
        "one_standard_error": result.one_standard_error,
        "selection_check": result.selection_check,
        "probe": _probe_info(probe),
        "val_accuracy": result.val_accuracy,
        "val_loss": result.val_loss,
        "candidates": result.candidates,
    }
    evaluation["baseline_quick"] = quick["baseline"] if quick else None
    base = evaluation["baseline_quick"]
    # "The quick head alone" won on validation: this version is the quick recipe, never "better".
    evaluation["better_than_quick"] = bool(
        not evaluation["recipe"]["quick_alone"]
        and base
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
    _stop_if_cancelled(job)
    return services.model_version_create(
        project=project,
        mode=ModelVersion.Mode.FULL,
        # what the served graph holds: the fine-tuned net, or the probe alone ("layers@260")
        features=(
            f"{result.backbone}@{result.resolution}"
            if result.weight > 0 or probe is None
            else f"{probe['feature_key']}@{graph.input_resolution}"
        ),
        label_names=label_names,
        thresholds=[0.5] * len(label_names) if multi else None,
        metrics=evaluation,
        predictions=predictions,
        n_train=n_train,
        artifact=artifact,
        suffix="onnx",
    )


def _stop_if_cancelled(job: TrainingJob) -> None:
    if services.training_job_cancel_requested(job=job):
        raise recipes.Cancelled("fine-tuning cancelled")


def _quick_fit(project, ids, Y, train, val, test, label_names, multi) -> dict | None:
    """The quick model's recipe fitted on the same train split: its val probabilities (for the
    blend candidates), the head and features (for the blend graph), its score on the same test split."""
    fids, feats = aligned_features(project_id=project.pk, backbones=settings.PICTOR_BACKBONES, sample_ids=ids)
    if len(fids) != len(ids):
        return None
    order = {sid: n for n, sid in enumerate(fids)}
    rows = np.array([order[sid] for sid in ids])
    tr, va, te = rows[train], rows[val], rows[test]
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

    def X(r):
        return heads.concat_features([feats[p][r] for p in parts]) if len(parts) > 1 else feats[parts[0]][r]

    probs = result.head.predict_proba(X(te))
    m = metrics.evaluate(Y[test], probs, label_names=label_names, multi_label=multi, thresholds=result.thresholds)
    return {
        "kind": "quick",
        "name": "quick head",
        "cv_log_loss": heads.log_loss(result.oof_probs, Y[train], multi_label=multi),
        "baseline": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "features": result.feature_key},
        "val_probs": result.head.predict_proba(X(va)).astype(np.float32),
        "head": result.head,
        "parts": parts,
        # for the refit on all labels: the same recipe (features, l2), every labeled row
        "feature_key": result.feature_key,
        "l2": result.l2,
        "features": {k: v[rows] for k, v in feats.items()},
        "pool": pool or None,
    }


def _probe_choice(
    job: TrainingJob,
    quick: dict | None,
    images: list[bytes],
    Y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    n_classes: int,
    multi: bool,
    config: recipes.SearchConfig,
) -> dict | None:
    """The head the fine-tunes are blended with: the quick one, or the multi-layer probe when its
    out-of-fold log loss on the same train rows (same folds) is lower. Same shape as ``_quick_fit``'s."""
    X = layers.compute(
        images,
        list(config.backbones),
        # as the served graph will compute them (its input: ensemble.serving_resolution)
        input_resolution=serving_resolution(config.resolution, config.backbones),
        should_stop=lambda: services.training_job_cancel_requested(job=job),
    )
    fitted = layers.fit(
        X[train], Y[train], multi_label=multi, n_classes=n_classes, max_seconds=settings.PICTOR_QUICK_SECONDS
    )
    cv = layers.cv_log_loss(fitted, Y[train], multi_label=multi)
    if quick is not None and quick["cv_log_loss"] <= cv:
        return {**quick, "rival_cv_log_loss": cv}
    return {
        "kind": "layers",
        "name": "multi-layer probe",
        "cv_log_loss": cv,
        "rival_cv_log_loss": quick["cv_log_loss"] if quick else None,
        "val_probs": fitted.head.predict_proba(X[val]).astype(np.float32),
        "head": fitted.head,
        "parts": list(config.backbones),
        "feature_key": layers.KEY,
        "l2": fitted.l2,
        "features": {layers.KEY: X},
        "pool": None,
    }


def _probe_info(probe: dict | None) -> dict | None:
    """What the metrics say about the probe: which won, on what out-of-fold log losses."""
    if probe is None:
        return None
    rival = probe["rival_cv_log_loss"]
    return {
        "kind": probe["kind"],
        "name": probe["name"],
        "features": probe["feature_key"],
        "l2": probe["l2"],
        "cv_log_loss": {
            probe["kind"]: round(probe["cv_log_loss"], 4),
            ("layers" if probe["kind"] == "quick" else "quick"): None if rival is None else round(rival, 4),
        },
    }


def _quick_graph(probe: dict | None, head, result: recipes.SearchResult, multi: bool):
    """The probe's part of the blend graph (None when the fine-tune alone won)."""
    if result.weight >= 1 or probe is None:
        return None
    if probe["kind"] == "layers":
        return layers.LayerHead(probe["parts"], head.W, head.b, multi_label=multi)
    return QuickGraph(probe["parts"], head.W, head.b, multi_label=multi)


def _blend(net, result: recipes.SearchResult, quick_graph, multi: bool) -> BlendGraph:
    """The served graph: its input is the largest resolution a part needs (``serving_resolution``)."""
    return BlendGraph(
        net,
        weight=result.weight,
        tta=result.tta,
        multi_label=multi,
        quick=quick_graph,
        finetune_resolution=result.resolution,
    )


def _export(graph: BlendGraph, images: list[bytes]) -> tuple[bytes, np.ndarray]:
    """The graph as ONNX bytes, and its probabilities on ``images`` through onnxruntime (as it will serve)."""
    resolution = graph.input_resolution
    with tempfile.TemporaryDirectory() as tmp:
        path = export_probabilities_onnx(graph, Path(tmp) / "model.onnx", resolution)
        probs = []
        if images:
            runner = bb.OnnxRunner(path)
            probs = [
                runner.run(bb.preprocess(images[s : s + 16], resolution))["probabilities"]
                for s in range(0, len(images), 16)
            ]
        return path.read_bytes(), (np.concatenate(probs).astype(np.float32) if probs else np.zeros((0, 0)))


def _refit(
    job: TrainingJob,
    result: recipes.SearchResult,
    quick: dict | None,
    items: list,
    Y: np.ndarray,
    n_classes: int,
    multi: bool,
    config: recipes.SearchConfig,
) -> tuple[tuple | None, dict]:
    """The selected recipe retrained on every labeled item: ((net, quick head) or None, what happened).

    None keeps the split's model (the refit did not fit its time budget); with "the quick head
    alone" only the quick head is refitted. A cancel raises, as during the search.
    """

    def progress(p: float, message: str) -> None:
        services.training_job_heartbeat(job=job, progress=0.93 + 0.05 * p, message=message)

    fitted = recipes.refit(
        items=items,
        num_classes=n_classes,
        multi_label=multi,
        result=result,
        config=config,
        max_seconds=settings.PICTOR_FINETUNE_REFIT_SECONDS,
        should_stop=lambda: services.training_job_cancel_requested(job=job),
        progress=progress,
    )
    _stop_if_cancelled(job)
    info = {
        "reason": fitted.reason,
        "seconds": fitted.seconds,
        "estimated_seconds": fitted.estimated_seconds,
        "budget_seconds": settings.PICTOR_FINETUNE_REFIT_SECONDS,
    }
    if fitted.reason not in ("refitted", "quick_alone"):
        info["trained_on"] = result.n_train
        return None, info
    head = None
    if result.weight < 1 and quick is not None:
        head = heads.refit_recipe(
            quick["features"],
            Y,
            feature_key=quick["feature_key"],
            l2=quick["l2"],
            multi_label=multi,
            n_classes=n_classes,
            pool=quick["pool"],
        )
    info["trained_on"] = len(items)
    return (fitted.model if fitted.model is not None else result.model, head), info
