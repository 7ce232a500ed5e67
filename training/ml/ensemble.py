"""Serving graphs built from torch modules: the quick classifier in-graph, and the full model's blend.

Pure PyTorch (no Django). A full model is stored as ONE ONNX graph with one input (float32
``(N, 3, R, R)`` in [-1, 1], R from ``serving_resolution``) and a ``probabilities`` output, so
``inference.predictors.FullPredictor``, batch jobs and the ONNX download need nothing new whatever
recipe won: the fine-tuned net (optionally averaged with its mirror image) blended with the quick
classifier (frozen backbones at their own resolutions, resized inside the graph, + linear head).
R is the largest resolution any of its parts needs: a part is never fed an enlarged image, and a
smaller one gets it shrunk as ``backbone.preprocess`` would (``resize``).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbone import export_graph, get_spec, load_backbone
from .pixels import CROP, PIXELS, torch_pixel_features

__all__ = [
    "BlendGraph",
    "LinearOnFeatures",
    "QuickGraph",
    "export_probabilities_onnx",
    "resize",
    "serving_resolution",
]


@functools.lru_cache(maxsize=16)
def _resize_matrix(src: int, dst: int) -> torch.Tensor:
    """``(dst, src)``: one axis of a bicubic resize, antialiased when shrinking (PIL's BICUBIC, which
    ``backbone.preprocess`` uses), built by resizing the identity."""
    eye = torch.eye(src, dtype=torch.float32)[None, None]
    return F.interpolate(eye, size=(dst, src), mode="bicubic", align_corners=False, antialias=True)[0, 0]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, S, S)`` → ``(N, C, size, size)`` with the filter ``backbone.preprocess`` uses.

    Two matrix products, because the TorchScript ONNX exporter has no antialiased Resize. On photos,
    the backbones' features of an input resized this way are closer to their features at their own
    preprocessing than after a plain bilinear resize.
    """
    with warnings.catch_warnings():
        # exported graphs have a fixed spatial size (only the batch is dynamic): a constant is right
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        src = int(x.shape[-1])
    if src == size:
        return x
    A = _resize_matrix(src, size).to(x.device, x.dtype)
    return A @ x @ A.T


def serving_resolution(finetune_resolution: int | None, parts: Sequence[str] = ()) -> int:
    """The input of a graph holding a fine-tuned net at ``finetune_resolution`` (None: none) and a
    probe on ``parts``: the largest any of them needs, so no part sees an enlarged image."""
    sizes = [CROP if p == PIXELS else get_spec(p).resolution for p in parts]
    if finetune_resolution is not None:
        sizes.append(finetune_resolution)
    if not sizes:
        raise ValueError("a graph needs a fine-tuned net or a probe")
    return max(sizes)


class LinearOnFeatures(nn.Module):
    """A probe's linear head ``z @ W + b`` as probabilities (softmax, or sigmoid for multi-label),
    on whatever features a subclass computes in-graph."""

    def __init__(self, W: np.ndarray, b: np.ndarray, *, multi_label: bool) -> None:
        super().__init__()
        self.multi_label = multi_label
        self.register_buffer("W", torch.from_numpy(np.ascontiguousarray(W, dtype=np.float32)))
        self.register_buffer("b", torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))

    def probabilities(self, z: torch.Tensor) -> torch.Tensor:
        logits = z @ self.W + self.b
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)


class QuickGraph(LinearOnFeatures):
    """Backbone(s) + L2 normalisation (+ concatenation) + the quick model's linear head ``z @ W + b``.

    ``input_resolution``: the size of the square input; each backbone (and the pixel feature)
    gets it resized to its own resolution in-graph (``resize``) when different.
    """

    def __init__(
        self,
        parts: Sequence[str],
        W: np.ndarray,
        b: np.ndarray,
        *,
        multi_label: bool,
        input_resolution: int | None = None,
    ) -> None:
        super().__init__(W, b, multi_label=multi_label)
        self.parts = list(parts)
        nets = [p for p in self.parts if p != PIXELS]
        self.backbones = nn.ModuleList([load_backbone(p) for p in nets])
        self.sizes = [get_spec(p).resolution for p in nets]
        self.input_resolution = input_resolution or serving_resolution(None, self.parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        nets = iter(zip(self.backbones, self.sizes))
        for part in self.parts:
            if part == PIXELS:
                # the classic feature (training.ml.pixels) from the same crop, in-graph
                feats.append(torch_pixel_features(resize(x, CROP)))
                continue
            net, size = next(nets)
            f = net.forward_head(net.forward_features(resize(x, size)), pre_logits=True)
            feats.append(f / f.norm(dim=1, keepdim=True).clamp_min(1e-12))
        z = torch.cat(feats, dim=1) / math.sqrt(len(feats)) if len(feats) > 1 else feats[0]
        return self.probabilities(z)


class BlendGraph(nn.Module):
    """``weight * finetuned(x) + (1 - weight) * quick(x)``, probabilities.

    ``tta``: the fine-tuned net's probabilities are the mean over ``x`` and its horizontal mirror.
    A part with zero share is left out of the graph (weight 1: no quick part; 0: no fine-tune).
    ``finetune_resolution``: the fine-tuned net's own input size; a larger input (the quick part's,
    ``serving_resolution``) is resized for it in-graph. ``input_resolution``: the graph's input
    (``quick.parts`` name the quick part's backbones).
    """

    def __init__(
        self,
        finetuned: nn.Module | None,
        *,
        weight: float,
        tta: bool,
        multi_label: bool,
        quick: nn.Module | None = None,
        finetune_resolution: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError("weight must be in [0, 1]")
        if weight > 0 and finetuned is None:
            raise ValueError("a positive weight needs the fine-tuned net")
        if weight < 1 and quick is None:
            raise ValueError("a weight below 1 needs the quick classifier")
        self.finetuned = finetuned if weight > 0 else None
        self.quick = quick if weight < 1 else None
        self.weight = float(weight)
        self.tta = tta
        self.multi_label = multi_label
        self.finetune_resolution = finetune_resolution if self.finetuned is not None else None
        parts = list(getattr(self.quick, "parts", ())) if self.quick is not None else []
        self.input_resolution = (
            serving_resolution(self.finetune_resolution, parts) if parts or self.finetune_resolution else None
        )

    def _ft(self, x: torch.Tensor) -> torch.Tensor:
        if self.finetune_resolution is not None:
            x = resize(x, self.finetune_resolution)
        logits = self.finetuned(x)
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        if self.finetuned is not None:
            p = self._ft(x)
            if self.tta:
                p = 0.5 * (p + self._ft(torch.flip(x, dims=[3])))
            out = p * self.weight
        if self.quick is not None:
            q = self.quick(x) * (1.0 - self.weight)
            out = q if out is None else out + q
        return out


def export_probabilities_onnx(module: nn.Module, path: str | os.PathLike, resolution: int) -> Path:
    """Export a module mapping ``input`` ``(N, 3, R, R)`` to ``probabilities`` (dynamic batch), atomically."""
    return export_graph(module.eval().cpu(), path, resolution=resolution, outputs=["probabilities"])
