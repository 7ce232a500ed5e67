"""One Embedder per backbone per process: loading an ONNX session costs far more than a batch.

"pixels" is the classic feature (training.ml.pixels): no network, same ``embed`` interface, stored
like a backbone's vectors so the quick model can pick it (or combine it) by cross-validation.
"""

from __future__ import annotations

import threading

from django.conf import settings

from training.ml.backbone import Embedder
from training.ml.pixels import PIXELS, PixelEmbedder

_lock = threading.Lock()
_embedders: dict[str, Embedder | PixelEmbedder] = {}


def embedder_get(name: str) -> Embedder | PixelEmbedder:
    with _lock:
        embedder = _embedders.get(name)
        if embedder is None:
            if name == PIXELS:
                embedder = PixelEmbedder()
            else:
                settings.MODEL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
                threads = getattr(settings, "PICTOR_ONNX_THREADS", 0) or None
                embedder = Embedder(name, cache_dir=settings.MODEL_CACHE_DIR, threads=threads)
            _embedders[name] = embedder
        return embedder
