"""A classic representation beside the ImageNet backbones: downsampled grey pixels.

Pure numpy/PIL (no Django, no torch). ImageNet features are the wrong representation for some data
(few-shot grey faces, handwritten digits, small icons): there a linear head on raw pixels, after PCA
(folded into the head by ``training.ml.heads``), wins. The vector is cheap enough to compute at
ingest for every sample and is stored like a backbone embedding under the name ``"pixels"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["PIXELS", "PixelEmbedder", "pixel_features"]

PIXELS = "pixels"
#: 16 x 16 grey: 256-d. Enough for digits/faces/icons; finer grids only add noise at few labels.
SIDE = 16


def _grey_square(data, side: int) -> np.ndarray:
    from training.ml.backbone import load_image

    img = load_image(data).convert("L")
    w, h = img.size
    # centre square crop, like the backbones' evaluation crop, so objects keep their aspect
    s = min(w, h)
    box = ((w - s) / 2.0, (h - s) / 2.0, (w + s) / 2.0, (h + s) / 2.0)
    small = img.resize((side, side), Image.Resampling.BOX if s >= side else Image.Resampling.BILINEAR, box=box)
    return np.asarray(small, dtype=np.float32).reshape(-1)


def pixel_features(images: Sequence, *, side: int = SIDE) -> np.ndarray:
    """(N, side*side) float32: per image centred and L2-normalised (brightness/contrast invariant)."""
    if not len(images):
        return np.zeros((0, side * side), np.float32)
    X = np.stack([_grey_square(im, side) for im in images])
    X -= X.mean(axis=1, keepdims=True)
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-6
    return X.astype(np.float32)


class PixelEmbedder:
    """Same interface as ``training.ml.backbone.Embedder.embed`` so ingest treats it as a backbone."""

    name = PIXELS

    def __init__(self, *, side: int = SIDE) -> None:
        self.side = side

    def embed(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        return pixel_features(images, side=self.side)
