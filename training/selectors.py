"""Reads of the training app: embedding progress and matrices, nearest neighbours."""

from __future__ import annotations

import uuid

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from labeling.models import LabelEvent, Sample
from projects.access import parse_uuid
from training.ml.store import FeatureStore, Snapshot
from training.models import Embedding, LearningPoint, ModelVersion, TrainingJob


def embedding_progress(*, project_id) -> dict:
    total = Sample.objects.filter(project_id=project_id).count()
    per = dict(
        Embedding.objects.filter(project_id=project_id)
        .values_list("backbone")
        .annotate(n=Count("id"))
        .values_list("backbone", "n")
    )
    backbones = settings.PICTOR_BACKBONES
    done = sum(min(per.get(b, 0), total) for b in backbones)
    want = total * len(backbones)
    return {
        "total": total,
        "per_backbone": {b: per.get(b, 0) for b in backbones},
        "fraction": (done / want) if want else 1.0,
        "complete": done >= want,
    }


def feature_store(*, project_id, backbone: str) -> FeatureStore:
    """The memory-mapped store of one project's vectors of one backbone (training/ml/store.py)."""
    return FeatureStore(settings.PICTOR_FEATURES_DIR / str(uuid.UUID(str(project_id))) / backbone)


def feature_snapshot(*, project_id, backbone: str) -> Snapshot | None:
    """The store's committed rows, mapped (shared page cache, cached per process); None when empty."""
    return feature_store(project_id=project_id, backbone=backbone).snapshot()


def uuid_keys(ids) -> np.ndarray:
    return np.array([uuid.UUID(str(i)).bytes for i in ids], dtype="S16")


def embedding_matrix(*, project_id, backbone: str) -> tuple[list, np.ndarray]:
    """(sample ids, float32 matrix) of every live sample's vector: the whole project in memory, so
    only for small projects, tests and benchmarks; product code reads the store's rows it needs."""
    snap = feature_snapshot(project_id=project_id, backbone=backbone)
    if snap is None:
        return [], np.zeros((0, 1280), np.float32)
    live = set(Sample.objects.filter(project_id=project_id).values_list("pk", flat=True))
    rows = {}
    for r, key in enumerate(snap.keys):
        sid = uuid.UUID(bytes=bytes(key).ljust(16, b"\0"))
        if sid in live:
            rows[sid] = r  # the last row of a sample wins
    ids = list(rows)
    return ids, snap.matrix(np.array(list(rows.values()), np.int64))


def sample_similar(
    *, sample: Sample, k: int = 12, backbone: str | None = None, exact: bool = False
) -> list[tuple[Sample, float]] | None:
    """Nearest neighbours by cosine similarity (approximate on large projects: the store's IVF
    index, re-ranked exactly); None when the sample has no vector yet."""
    backbone = backbone or settings.PICTOR_BACKBONES[0]
    snap = feature_snapshot(project_id=sample.project_id, backbone=backbone)
    key = sample.pk.bytes
    row = snap.row_for(key) if snap is not None else -1
    if row < 0:
        return None
    # a few extra: rows of deleted samples stay in the store until it is compacted
    rows, scores = snap.search(np.asarray(snap.vectors[row], np.float32), k + 8, exclude_key=key, exact=exact)
    ids = [uuid.UUID(bytes=bytes(snap.keys[r]).ljust(16, b"\0")) for r in rows]
    by_id = Sample.objects.filter(project_id=sample.project_id).prefetch_related("labels").in_bulk(ids)
    out = [(by_id[i], float(s)) for i, s in zip(ids, scores) if i in by_id]
    return out[:k]


def sample_near_duplicates(*, sample: Sample, threshold: float = 0.97, k: int = 20) -> list[tuple[Sample, float]]:
    """Other samples whose vector is almost the same (resized, re-encoded or lightly cropped copies)."""
    similar = sample_similar(sample=sample, k=k) or []
    return [(s, score) for s, score in similar if score >= threshold]


def sample_similar_context(sample: Sample) -> dict:
    similar = sample_similar(sample=sample)
    duplicates = [(s, score) for s, score in similar or [] if score >= 0.97]
    status = "computed" if similar is not None else "waiting for the background worker"
    return {"similar": similar or [], "near_duplicates": duplicates, "embedding_status": status}


def training_job_list(*, project):
    return TrainingJob.objects.filter(project=project).select_related("model").order_by("-created")


def training_job_get(*, project, job_id):
    pk = parse_uuid(job_id)
    return TrainingJob.objects.select_related("model").filter(project=project, pk=pk).first() if pk else None


def training_job_active(*, project, mode: str) -> bool:
    return TrainingJob.objects.filter(project=project, mode=mode, status__in=["queued", "running"]).exists()


def model_list(*, project):
    return list(ModelVersion.objects.filter(project=project).order_by("-version"))


def model_get(*, project, model_id):
    pk = parse_uuid(model_id)
    return ModelVersion.objects.filter(project=project, pk=pk).first() if pk else None


def project_training_figures(project_ids: list) -> dict:
    """Dashboard figures: deployed model and the last training's status per project."""
    out: dict = {pid: {} for pid in project_ids}
    for m in ModelVersion.objects.filter(project_id__in=project_ids, deployed=True):
        out[m.project_id]["deployed_version"] = m.version
        out[m.project_id]["deployed_model"] = {"id": str(m.pk), "version": m.version}
    seen = set()
    for job in (
        TrainingJob.objects.filter(project_id__in=project_ids)
        .order_by("-created")
        .only("project_id", "status", "mode")[:1000]
    ):
        if job.project_id not in seen:
            seen.add(job.project_id)
            out[job.project_id]["last_training_status"] = f"{job.status} ({job.mode})"
    return out


def model_predictions(*, model) -> list[list]:
    """A model's held-out predictions as ``[sample id, true, predicted, confidence]`` (single-label:
    names, multi-label: name lists), in the order they were stored."""
    multi = model.project.is_multi_label
    out = []
    for sid, t, p, c in model.held_out.order_by("id").values_list("sample_id", "true", "predicted", "confidence"):
        if multi:
            out.append([str(sid), t, p, c])
        else:
            out.append([str(sid), t[0], p[0], c])
    return out


def model_cell_samples(*, model, true: str, predicted: str, limit: int = 60) -> list:
    """Samples behind one confusion-matrix cell (held-out predictions of that model)."""
    ids = []
    rows = model.held_out.order_by("id").values_list("sample_id", "true", "predicted")
    for sid, t, p in rows.iterator(chunk_size=2000):
        if true in t and predicted in p:
            ids.append(sid)
            if len(ids) >= limit:
                break
    by_id = Sample.objects.prefetch_related("labels").in_bulk(ids)
    return [by_id[k] for k in ids if k in by_id]


def model_confusion_rows(*, model) -> list[dict]:
    """The confusion matrix as rows of cells with counts and a 0..1 shade (row-normalised)."""
    cm = (model.metrics or {}).get("confusion_matrix") or {}
    labels, matrix = cm.get("labels", []), cm.get("matrix", [])
    rows = []
    for i, name in enumerate(labels):
        row = matrix[i] if i < len(matrix) else []
        total = sum(row) or 1
        rows.append(
            {
                "label": name,
                "cells": [
                    {"predicted": labels[j], "count": n, "shade": round(n / total, 3), "diagonal": i == j}
                    for j, n in enumerate(row)
                ],
            }
        )
    return rows


def review_items(*, project, limit: int = 50) -> list[dict]:
    """Likely label errors of the newest quick model that nobody has reviewed since."""
    model = ModelVersion.objects.filter(project=project, mode="quick").order_by("-version").first()
    if model is None:
        return []
    errors = (model.metrics or {}).get("likely_errors") or []
    ids = [parse_uuid(e["sample_id"]) for e in errors]
    reviewed = set(
        LabelEvent.objects.filter(sample_id__in=ids, via__in=["review-confirm", "review-fix"]).values_list(
            "sample_id", flat=True
        )
    )
    by_id = Sample.objects.prefetch_related("labels").in_bulk([i for i in ids if i not in reviewed])
    out = []
    for e, sid in zip(errors, ids):
        sample = by_id.get(sid)
        current = sorted(l.name for l in sample.labels.all()) if sample else []
        # Skip what changed since the model saw it: the suggestion was about the old label.
        if sample is None or current != [e["given"]]:
            continue
        out.append({"sample": sample, **e})
        if len(out) >= limit:
            break
    return out


# ----------------------------------------------------------------------------- the pipeline's reads


def projects_missing_features() -> list:
    """Projects with samples that lack a vector (or an error row) for some backbone."""
    want = len(settings.PICTOR_BACKBONES)
    totals = dict(Sample.objects.values_list("project_id").annotate(n=Count("id")).values_list("project_id", "n"))
    have = dict(
        Embedding.objects.filter(backbone__in=settings.PICTOR_BACKBONES)
        .values_list("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    return [pid for pid, n in totals.items() if have.get(pid, 0) < n * want]


def projects_with_unlearned_labels() -> list:
    """Projects whose labels changed after their newest quick model and quick job (a missed dispatch)."""
    last_label = dict(
        LabelEvent.objects.values_list("sample__project_id")
        .annotate(t=Max("created"))
        .values_list("sample__project_id", "t")
    )
    quick = ModelVersion.Mode.QUICK
    last_model = dict(
        ModelVersion.objects.filter(mode=quick)
        .values_list("project_id")
        .annotate(t=Max("created"))
        .values_list("project_id", "t")
    )
    last_try = dict(
        TrainingJob.objects.filter(mode=quick)
        .values_list("project_id")
        .annotate(t=Max("created"))
        .values_list("project_id", "t")
    )
    out = []
    for project_id, labeled in last_label.items():
        newest = max(filter(None, [last_model.get(project_id), last_try.get(project_id)]), default=None)
        if newest is None or labeled > newest:
            out.append(project_id)
    return out


def projects_missing_zero_shot(*, limit: int = 200) -> list:
    """Projects with nothing deployed whose label names all map to ImageNet but lack a zero-shot
    version for them (its dispatch was lost, e.g. the broker was down when the labels were made)."""
    from labeling.models import Label
    from training.ml import zeroshot

    deployed = ModelVersion.objects.filter(deployed=True).values("project_id")
    names: dict = {}
    for project_id, name in (
        Label.objects.exclude(project_id__in=deployed).order_by("project_id", "name").values_list("project_id", "name")
    ):
        names.setdefault(project_id, []).append(name)
    latest = {}
    for project_id, label_names in (
        ModelVersion.objects.filter(mode=ModelVersion.Mode.ZERO_SHOT, project_id__in=list(names))
        .order_by("project_id", "version")
        .values_list("project_id", "label_names")
    ):
        latest[project_id] = list(label_names)
    out = []
    for project_id, label_names in names.items():
        if latest.get(project_id) == label_names:
            continue
        if zeroshot.class_groups([zeroshot.label_map(n) for n in label_names]) is not None:
            out.append(project_id)
        if len(out) >= limit:
            break
    return out


def training_jobs_lost(*, older_than: int = 300) -> list[TrainingJob]:
    """Queued jobs nobody picked up for a while (the broker was down when they were created)."""
    from datetime import timedelta

    from django.utils import timezone

    cutoff = timezone.now() - timedelta(seconds=older_than)
    # A job waiting for features is re-sent by its own countdown and has a fresh heartbeat.
    return list(
        TrainingJob.objects.filter(status=TrainingJob.Status.QUEUED, created__lt=cutoff)
        .exclude(heartbeat__gt=cutoff)
        .only("pk", "mode")[:100]
    )


def labeled_label_count(*, project_id) -> int:
    """How many distinct labels the labeled samples carry."""
    from labeling.models import SampleLabel

    return (
        SampleLabel.objects.filter(sample__project_id=project_id, sample__labeled_at__isnull=False)
        .values("label_id")
        .distinct()
        .count()
    )


def labeled_count(*, project_id) -> int:
    return Sample.objects.filter(project_id=project_id, labeled_at__isnull=False).count()


def labeled_without_features(*, project_id, backbones: list[str]) -> int:
    """Labeled samples still waiting for a vector (or an error row) of one of `backbones`."""
    labeled = Sample.objects.filter(project_id=project_id, labeled_at__isnull=False)
    missing = labeled.none()
    for backbone in backbones:
        done = Embedding.objects.filter(project_id=project_id, backbone=backbone).values("sample_id")
        missing = missing | labeled.exclude(pk__in=done)
    return missing.distinct().count()


def label_imagenet(*, names: list[str]) -> dict[str, dict | None]:
    """Each label name's ImageNet-1k classes through WordNet (the zero-shot model's view), or None;
    ``own_classes``: how many of them the zero-shot head gives this label among ``names``."""
    from training.ml import zeroshot
    from training.ml.backbone import imagenet_class_names

    classes = imagenet_class_names()
    mappings = [zeroshot.label_map(name) for name in names]
    owned = zeroshot.class_owners(mappings)
    out: dict[str, dict | None] = {}
    for name, m, own in zip(names, mappings, owned, strict=True):
        out[name] = (
            None
            if m is None
            else {
                "classes": [classes[i] for i in m.classes],
                "indices": list(m.classes),
                "wordnet_id": m.wordnet_id,
                "definition": m.definition,
                "ambiguous": m.ambiguous,
                "other_senses": list(m.other_senses),
                "via": m.via or None,
                "approximate": m.approximate,
                "own_classes": len(own),
            }
        )
    return out


_CURVE_SERIES = {"quick": "quick model", "full": "full training", "zero_shot": "zero-shot"}


def learning_curve(*, project, width: int = 640, height: int = 260) -> dict | None:
    """The models page's learning curve: accuracy against labeled samples, one series per kind of
    model, laid out for a server-rendered SVG (a log-scale x axis: labels grow by doubling).
    None until two points exist. Per series and label count the newest measurement counts."""
    import math

    rows = list(
        LearningPoint.objects.filter(project=project)
        .order_by("id")
        .values_list("mode", "n_labels", "accuracy", "version")
    )
    latest: dict = {}
    for mode, n, acc, version in rows:
        latest[(mode, n)] = (acc, version)
    if len(latest) < 2:
        return None
    left, right, top, bottom = 48, 16, 26, 36  # top: room for the axis title above the 1.0 tick
    ns = [n for _, n in latest]
    lo, hi = math.log10(max(1, min(ns))), math.log10(max(ns))
    if hi - lo < 0.3:  # fewer than a doubling of labels: still a readable axis
        lo, hi = max(0.0, lo - 0.15), hi + 0.15
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(n: int) -> float:
        return round(left + (math.log10(max(n, 1)) - lo) / (hi - lo) * plot_w, 1)

    def y(acc: float) -> float:
        return round(top + (1 - acc) * plot_h, 1)

    series = []
    for mode, name in _CURVE_SERIES.items():
        pts = sorted((n, acc, v) for (m, n), (acc, v) in latest.items() if m == mode)
        if pts:
            series.append(
                {
                    "mode": mode,
                    "name": name,
                    "points": [
                        {"x": x(n), "y": y(acc), "n": n, "accuracy": round(acc, 3), "version": v} for n, acc, v in pts
                    ],
                    "path": " ".join(f"{x(n)},{y(acc)}" for n, acc, _ in pts),
                }
            )
    ticks = [
        t
        for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
        if 10**lo - 1e-9 <= t <= 10**hi + 1e-9
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": height - bottom,
        "series": series,
        "x_ticks": [{"x": x(t), "label": t} for t in ticks],
        "y_ticks": [{"y": y(a), "label": f"{a:.1f}"} for a in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)],
    }
