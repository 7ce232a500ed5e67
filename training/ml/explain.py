"""Where did the model look? Occlusion sensitivity: grey out one cell at a time, watch the score drop.

Model-agnostic (works on any image → probabilities function, ONNX or torch), one batched pass of
grid² + 1 images. Pure numpy/Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image


def occlusion_map(
    predict: Callable[[Sequence[Image.Image]], np.ndarray], image: Image.Image, class_index: int, *, grid: int = 7
) -> np.ndarray:
    """(grid, grid) map in [0, 1]: how much greying each cell lowers the class's probability."""
    image = image.convert("RGB")
    w, h = image.size
    variants = [image]
    for gy in range(grid):
        for gx in range(grid):
            box = (gx * w // grid, gy * h // grid, (gx + 1) * w // grid, (gy + 1) * h // grid)
            occluded = image.copy()
            occluded.paste((128, 128, 128), box)
            variants.append(occluded)
    probs = np.asarray(predict(variants))
    base = probs[0, class_index]
    drops = np.clip(base - probs[1:, class_index], 0, None).reshape(grid, grid)
    peak = drops.max()
    return drops / peak if peak > 0 else drops


def heatmap_png(image: Image.Image, heat: np.ndarray, *, alpha: float = 0.5, max_side: int = 512) -> bytes:
    """The image with the heat map laid over it (red = important), as PNG bytes."""
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8), "L").resize(image.size, Image.BICUBIC)
    h = np.asarray(heat_img, dtype=np.float32) / 255.0
    overlay = np.zeros((*h.shape, 3), np.float32)
    overlay[..., 0] = 255
    overlay[..., 1] = 255 * (1 - h) * 0.3
    base = np.asarray(image, dtype=np.float32)
    a = (alpha * h)[..., None]
    mixed = (base * (1 - a) + overlay * a).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(mixed).save(buf, "PNG", optimize=True)
    return buf.getvalue()
