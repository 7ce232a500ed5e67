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


#: The pixels are taken from the same centre crop the backbones see (224 px, Lite0's evaluation
#: crop), so an exported ONNX graph can compute them from its image input: 224 / 16 = 14-pixel boxes.
CROP = 224


def _grey_square(data, side: int) -> np.ndarray:
    from training.ml.backbone import _resize_and_crop, crop_size_for, load_image

    short = crop_size_for(CROP)
    img = _resize_and_crop(load_image(data, min_size=short), CROP, short).convert("L")
    small = img.resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).reshape(-1)


def torch_pixel_features(x, *, side: int = SIDE):
    """The same feature inside a torch graph, from backbone input ``x`` (N, 3, 224, 224) in [-1, 1]."""
    import torch.nn.functional as F

    rgb = (x + 1.0) * 127.5
    grey = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    # A fixed box (224 / 16 = 14 px, what PIL's BOX resize averages): adaptive pooling needs the input
    # size at export, which the exporter loses once the graph has resized its input (ensemble.QuickGraph).
    small = F.avg_pool2d(grey.unsqueeze(1), CROP // side).flatten(1)
    small = small - small.mean(dim=1, keepdim=True)
    return small / (small.norm(dim=1, keepdim=True) + 1e-6)


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
