"""Serving: one predictor per model version per process, built completely before it is visible.

A model version never changes under its id, so "swap atomically" is simply: look up which id is
deployed (one indexed query), then use the predictor cached for that id. A request that started
with the old id finishes with the old predictor; nobody ever sees a half-loaded one, because a
predictor enters the cache only once it is fully built.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from training.ml import backbone as bb
from training.ml.heads import concat_features
from training.models import ModelVersion

_lock = threading.Lock()
_cache: OrderedDict = OrderedDict()
_MAX = 16


@dataclass
class Prediction:
    probs: np.ndarray  # (N, C)
    label_names: list[str]
    thresholds: list[float] | None
    multi_label: bool


class QuickPredictor:
    """Backbone feature graphs (shared with embedding) + the linear head, on raw images."""

    def __init__(self, model: ModelVersion):
        from training.embedders import embedder_get
        from training.ml.features import FeatureKey
        from training.quick import head_load

        self.parts = list(FeatureKey.parse(model.features))
        self.embedders = [embedder_get(p) for p in self.parts]
        self.head = head_load(model)

    def predict(self, images: list) -> np.ndarray:
        feats = [e.embed(images, batch_size=max(1, len(images))) for e in self.embedders]
        X = concat_features(feats) if len(feats) > 1 else feats[0]
        return self.head.predict_proba(X)


class ZeroShotPredictor:
    """The backbone's ImageNet head summed over each label's WordNet classes (training.zeroshot)."""

    def __init__(self, model: ModelVersion):
        from training.embedders import embedder_get
        from training.zeroshot import head_load

        self.embedder = embedder_get(model.features)
        self.head = head_load(model)

    def predict(self, images: list) -> np.ndarray:
        return self.head.predict_proba(self.embedder.embed(images, batch_size=max(1, len(images))))


class FullPredictor:
    """The fine-tuned classifier graph; its first output is the probabilities."""

    def __init__(self, model: ModelVersion):
        path = local_copy(model.artifact_name)
        self.runner = bb.OnnxRunner(path, threads=getattr(settings, "PICTOR_ONNX_THREADS", 0) or None)
        self.resolution = self.runner.resolution or int(model.features.rsplit("@", 1)[-1])

    def predict(self, images: list) -> np.ndarray:
        out = self.runner.run(bb.preprocess(images, self.resolution))
        return out.get("probabilities", next(iter(out.values())))


def local_copy(name: str) -> Path:
    """A local file for a stored artifact (itself on the filesystem storage; a cached copy on S3)."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        target = Path(settings.MODEL_CACHE_DIR) / "artifacts" / name.replace("/", "_")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            with default_storage.open(name, "rb") as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, target)
        return target


def predictor_get(model: ModelVersion):
    with _lock:
        hit = _cache.get(model.pk)
        if hit is not None:
            _cache.move_to_end(model.pk)
            return hit
    kinds = {ModelVersion.Mode.QUICK: QuickPredictor, ModelVersion.Mode.ZERO_SHOT: ZeroShotPredictor}
    predictor = kinds.get(model.mode, FullPredictor)(model)
    with _lock:
        _cache[model.pk] = predictor
        while len(_cache) > _MAX:
            _cache.popitem(last=False)
    return predictor


def predict(model: ModelVersion, images: list) -> Prediction:
    probs = predictor_get(model).predict(images)
    return Prediction(
        probs=np.asarray(probs, dtype=np.float32),
        label_names=list(model.label_names),
        thresholds=model.thresholds,
        multi_label=model.project.is_multi_label if hasattr(model, "project") else False,
    )
