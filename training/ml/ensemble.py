"""Serving graphs built from torch modules: the quick classifier in-graph, and the full model's blend.

Pure PyTorch (no Django). A full model is stored as ONE ONNX graph with one input (float32
``(N, 3, R, R)`` in [-1, 1], R the fine-tuned net's resolution) and a ``probabilities`` output, so
``inference.predictors.FullPredictor``, batch jobs and the ONNX download need nothing new whatever
recipe won: the fine-tuned net (optionally averaged with its mirror image) blended with the quick
classifier (frozen backbones at their own resolutions, resized inside the graph, + linear head).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbone import export_graph, get_spec, load_backbone
from .pixels import CROP, PIXELS, torch_pixel_features

__all__ = ["BlendGraph", "LinearOnFeatures", "QuickGraph", "export_probabilities_onnx"]


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
    gets it resized to its own resolution in-graph (bilinear) when different.
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
        self.input_resolution = input_resolution or max(self.sizes or [CROP])

    def _resized(self, x: torch.Tensor, size: int) -> torch.Tensor:
        if size == self.input_resolution:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        nets = iter(zip(self.backbones, self.sizes))
        for part in self.parts:
            if part == PIXELS:
                # the classic feature (training.ml.pixels) from the same crop, in-graph
                feats.append(torch_pixel_features(self._resized(x, CROP)))
                continue
            net, size = next(nets)
            f = net.forward_head(net.forward_features(self._resized(x, size)), pre_logits=True)
            feats.append(f / f.norm(dim=1, keepdim=True).clamp_min(1e-12))
        z = torch.cat(feats, dim=1) / math.sqrt(len(feats)) if len(feats) > 1 else feats[0]
        return self.probabilities(z)


class BlendGraph(nn.Module):
    """``weight * finetuned(x) + (1 - weight) * quick(x)``, probabilities.

    ``tta``: the fine-tuned net's probabilities are the mean over ``x`` and its horizontal mirror.
    A part with zero share is left out of the graph (weight 1: no quick part; 0: no fine-tune).
    """

    def __init__(
        self,
        finetuned: nn.Module | None,
        *,
        weight: float,
        tta: bool,
        multi_label: bool,
        quick: nn.Module | None = None,
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

    def _ft(self, x: torch.Tensor) -> torch.Tensor:
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
