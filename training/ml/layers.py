"""Multi-layer features: the backbones' intermediate stages pooled, beside their final features.

A linear probe on the last layer of an ImageNet net sees what ImageNet's classes needed; textures,
materials and small grey images are described better by the middle stages (Head2Toe, Evci et al.
2022: a probe on pooled features from many layers matches fine-tuning on such tasks). Per backbone,
the mean and standard deviation over space of stages ``STAGES`` (each block L2-normalised, then the
whole) join its L2-normalised final features; the backbones' vectors are concatenated and scaled
like ``heads.concat_features``. One module computes this for training (exported to onnxruntime on
CPU, or in torch) and inside the served graph, from the same input size (``compute``'s
``input_resolution``, the graph's input), so the two cannot drift apart.

Pure PyTorch/numpy (no Django).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import backbone as bb
from . import heads
from .ensemble import LinearOnFeatures, resize, serving_resolution

#: The stages (of EfficientNet-Lite's seven) whose pooled statistics join the final features.
STAGES = (3, 4, 5, 6)
#: The feature key a multi-layer probe records (``heads.AutoMLResult.feature_key``).
KEY = "layers"


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class LayerFeatures(nn.Module):
    """``(N, 3, R, R)`` in [-1, 1] → ``(N, D)`` multi-layer features of ``parts`` (backbone names).

    ``input_resolution``: the size of the input (default: the largest backbone's); each backbone
    gets it resized to its own resolution in-graph when different (``ensemble.resize``, as
    ``ensemble.QuickGraph`` does).
    """

    def __init__(self, parts: Sequence[str], *, input_resolution: int | None = None) -> None:
        super().__init__()
        if not parts:
            raise ValueError("LayerFeatures needs at least one backbone")
        self.parts = list(parts)
        self.backbones = nn.ModuleList([bb.load_backbone(p) for p in self.parts])
        self.sizes = [bb.get_spec(p).resolution for p in self.parts]
        self.input_resolution = input_resolution or serving_resolution(None, self.parts)

    def _one(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = net.bn1(net.conv_stem(x))
        stats = []
        for i, block in enumerate(net.blocks):
            h = block(h)
            if i in STAGES:
                stats += [_unit(h.mean(dim=(2, 3))), _unit(h.std(dim=(2, 3)))]
        final = net.global_pool(net.bn2(net.conv_head(h)))
        return _unit(final), _unit(torch.cat(stats, dim=1))

    def part(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone ``i``'s (final, stats) of the input, resized to its resolution in-graph."""
        return self._one(self.backbones[i], resize(x, self.sizes[i]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finals, stats = [], []
        for i in range(len(self.backbones)):
            f, s = self.part(i, x)
            finals.append(f)
            stats.append(s)
        blocks = finals + stats
        return torch.cat(blocks, dim=1) / math.sqrt(len(blocks))


class LayerHead(LinearOnFeatures):
    """``LayerFeatures`` + a linear head ``z @ W + b`` → probabilities (the served probe)."""

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
        self.features = LayerFeatures(parts, input_resolution=input_resolution)

    @property
    def parts(self) -> list[str]:
        return self.features.parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self.features(x))


@torch.no_grad()
def compute(
    images: Sequence[bb.ImageInput],
    parts: Sequence[str],
    *,
    input_resolution: int | None = None,
    batch_size: int = 32,
    should_stop: Callable[[], bool] | None = None,
    runtime: str = "auto",
) -> np.ndarray:
    """float32 ``(N, D)`` multi-layer features of ``images`` exactly as a served ``LayerHead`` with
    that ``input_resolution`` (default: the largest backbone's) computes them: the images
    preprocessed at it, each backbone fed its in-graph resize. On CPU the module runs in
    onnxruntime (exported once per backbone, ~2 s; ~3x faster than eager torch on 2 cores), on CUDA
    in torch.

    ``should_stop`` is polled per batch; True raises ``Cancelled`` (``training.ml.recipes``).
    """
    from .recipes import Cancelled

    if runtime not in ("auto", "torch"):
        raise ValueError(f"unknown runtime {runtime!r}")
    dev = bb.device()
    res = input_resolution or serving_resolution(None, parts)
    per_part: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for part in parts:
        single = LayerFeatures([part], input_resolution=res).eval()
        if dev.type == "cpu" and runtime == "auto":
            with tempfile.TemporaryDirectory() as tmp:
                path = bb.export_graph(
                    _PairOut(single), Path(tmp) / "layers.onnx", resolution=res, outputs=["final", "stats"]
                )
                runner = bb.OnnxRunner(path)

            def run(x: np.ndarray, runner=runner) -> tuple[torch.Tensor, torch.Tensor]:
                out = runner.run(x)
                return torch.from_numpy(out["final"]), torch.from_numpy(out["stats"])

        else:
            single = single.to(dev)

            def run(x: np.ndarray, single=single) -> tuple[torch.Tensor, torch.Tensor]:
                f, s = single.part(0, torch.from_numpy(x).to(dev))
                return f.float().cpu(), s.float().cpu()

        finals, stats = [], []
        for start in range(0, len(images), batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled("fine-tuning cancelled")
            f, s = run(bb.preprocess(images[start : start + batch_size], res))
            finals.append(f)
            stats.append(s)
        per_part.append((finals, stats))
    if not len(images):
        return np.zeros((0, 0), np.float32)
    blocks = [torch.cat(f) for f, _ in per_part] + [torch.cat(s) for _, s in per_part]
    return (torch.cat(blocks, dim=1) / math.sqrt(len(blocks))).numpy().astype(np.float32)


class _PairOut(nn.Module):
    """One backbone's (final, stats) as two graph outputs, for the onnxruntime path of ``compute``."""

    def __init__(self, single: LayerFeatures) -> None:
        super().__init__()
        self.single = single

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.single.part(0, x)


def fit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    multi_label: bool,
    n_classes: int,
    max_seconds: float | None = None,
) -> heads.AutoMLResult:
    """The multi-layer probe: ``heads.automl_fit`` on the one feature set ``KEY`` (l2 by
    cross-validation, the same folds as the quick model's on the same rows)."""
    return heads.automl_fit({KEY: X}, y, multi_label=multi_label, n_classes=n_classes, max_seconds=max_seconds)


def cv_log_loss(result: heads.AutoMLResult, y: np.ndarray, *, multi_label: bool) -> float:
    """The out-of-fold log loss of an AutoML result (what selects between the quick model and this probe)."""
    return heads.log_loss(result.oof_probs, y, multi_label=multi_label)
