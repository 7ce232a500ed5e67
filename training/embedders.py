"""One Embedder per backbone per process: loading an ONNX session costs far more than a batch."""

from __future__ import annotations

import threading

from django.conf import settings

from training.ml.backbone import Embedder

_lock = threading.Lock()
_embedders: dict[str, Embedder] = {}


def embedder_get(name: str) -> Embedder:
    with _lock:
        embedder = _embedders.get(name)
        if embedder is None:
            settings.MODEL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
            embedder = Embedder(name, cache_dir=settings.MODEL_CACHE_DIR)
            _embedders[name] = embedder
        return embedder
