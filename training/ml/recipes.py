"""Full-training recipe search: cached partial fine-tuning, test-time flip and a blend with the quick head.

Pure PyTorch / numpy (no Django). ``search`` tries several fine-tuning recipes within one wall-clock
budget and selects on the validation split only; the caller reports the winner on its test split.

Why it is built this way (CPU first):

* **Cached partial fine-tuning.** The frozen early stages of an EfficientNet-Lite are ~90% of its
  forward cost, and a few hundred or thousand images cannot improve their generic edges/textures.
  So they run ONCE per image view (original and horizontal flip) and their output, the input of
  the last ``max(blocks)`` stages, is cached in float16 on the training device. Training then runs
  only the last K stages + head conv + classifier on the cache: an epoch costs ~3% (K=1) or ~30%
  (K=2) of one full forward, so several recipes and many epochs fit where a fine-tune that
  re-runs the trunk every step (with fresh image augmentation) fits one. The price is weaker
  augmentation (flip only). Cached random resized crops as extra views were measured on dtd10
  (bench/finetune.py) and made no fine-tune beat the quick head on val, so they are not kept.
* **LP-FT**: each backbone's classifier starts from a logistic regression on its frozen features
  (Kumar et al. 2022), which is also the "epoch 0" candidate: fine-tuning must beat it on val.
* **Frozen BatchNorm** (the model stays in eval mode; dropout is applied by hand before the
  classifier): batch statistics of small data are noisier than the ImageNet ones.
* **Selection on val**: every candidate (backbone, K, lr) keeps its best epoch by val loss; then
  test-time flip on/off and the blend weight with the quick head's val probabilities are chosen
  by val accuracy (tie: val log loss). Weight 0 is "the quick head alone": the fine-tune did not
  pay, and the caller must say so. The probe blended with is the caller's (the quick head, or the
  multi-layer probe of ``training.ml.layers``).
* **One standard error**: the best of dozens of (recipe, weight, flip) choices on a few hundred
  validation images wins partly by chance, while the probe's recipe was chosen by cross-validation
  on the train split. So the probe alone stands unless the selected blend beats it on validation
  by more than one standard error of their paired difference (``simpler_holds``), both in sample
  and cross-fitted: each half of validation scored by the blend chosen on the other half
  (``cross_fitted_probs``), which asks whether the choosing itself pays on images it did not see.
* **Budget**: one deadline for the whole search. A backbone's cache is only built when its
  estimated cost (measured per image on the previous backbone) still fits; each candidate stops
  at the deadline and keeps its best validated epoch.
* **Refit**: the search learns from the train split only, while the quick model a user already
  has learns from every label; ``refit`` replays the selected recipe (backbone, K, lr, epoch
  count) on all of them, within its own budget estimated from the costs the search measured.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import backbone as bb

__all__ = [
    "Cancelled",
    "Item",
    "Refit",
    "SearchConfig",
    "SearchResult",
    "Target",
    "blend_choice",
    "refit",
    "refit_estimate",
    "search",
    "simpler_holds",
    "stratified_split",
]

Target = int | Sequence[int] | Sequence[float]
Item = tuple[bb.ImageInput, Target]  # (image, class index or multi-hot list)


class Cancelled(Exception):
    """``should_stop`` returned True: the search was abandoned."""


def _targets_tensor(targets: Sequence[Target], num_classes: int, multi_label: bool) -> torch.Tensor:
    if multi_label:
        rows = [list(t) for t in targets]  # type: ignore[arg-type]
        tensor = torch.tensor(rows, dtype=torch.float32) if rows else torch.zeros(0, num_classes)
        if tensor.ndim != 2 or tensor.shape[1] != num_classes:
            raise ValueError(f"multi-label targets must be multi-hot lists of length {num_classes}")
        return tensor
    tensor = torch.tensor([int(t) for t in targets], dtype=torch.long)  # type: ignore[arg-type]
    if len(tensor) and (tensor.min() < 0 or tensor.max() >= num_classes):
        raise ValueError(f"single-label targets must be class indices in [0, {num_classes})")
    return tensor


def _pos_weight(targets: torch.Tensor) -> torch.Tensor:
    """Multi-label balancing: up-weight rare positives by sqrt(neg/pos), clipped to [1, 10].

    The square root keeps probabilities from being pushed far above the real base rate.
    """
    positives = targets.sum(0)
    negatives = len(targets) - positives
    return torch.sqrt(negatives / positives.clamp(min=1)).clamp(1.0, 10.0)


def _probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)


def stratified_split(y_key: Sequence, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 70/15/15 train/val/test split by ``y_key``; every class in train when possible."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    groups: dict = {}
    for i, key in enumerate(y_key):
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        idx = list(rng.permutation(idx))
        n_test = int(round(len(idx) * 0.15)) if len(idx) >= 4 else 0
        n_val = int(round(len(idx) * 0.15)) if len(idx) >= 4 else (1 if len(idx) >= 3 else 0)
        test += idx[:n_test]
        val += idx[n_test : n_test + n_val]
        train += idx[n_test + n_val :]
    return (
        np.array(sorted(train), dtype=np.int64),
        np.array(sorted(val), dtype=np.int64),
        np.array(sorted(test), dtype=np.int64),
    )


@dataclass
class SearchConfig:
    backbones: tuple[str, ...] = ("lite0", "lite2")
    blocks: tuple[int, ...] = (1, 2)  # trailing stages trained end to end (on the cache)
    lrs: tuple[float, ...] = (1e-3, 3e-3)  # head lr; the trained stages use lr * body_lr_mult
    body_lr_mult: float = 0.3
    # (K, lr) pairs tried per backbone, in this order (cheap first); None: all of blocks x lrs.
    recipes: tuple[tuple[int, float], ...] | None = ((1, 1e-3), (1, 3e-3), (2, 1e-3))
    epochs: int = 30
    patience: int = 4
    batch_size: int = 64
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    drop_rate: float = 0.2
    warmup_fraction: float = 0.05
    probe_l2: float = 1e-3
    # "linear_probe" (LP-FT) or "zeros" (a zero head: the fine-tune starts from chance).
    head_init: str = "linear_probe"
    max_seconds: float | None = 600.0
    resolution: int | None = None  # None: each backbone's native resolution
    # A flipped copy of the training images is cached only up to this many (it doubles the cache
    # cost, and large sets need the augmentation least); val/test flips are always cached (TTA).
    flip_train_max: int = 2000
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # fine-tune share of the blend
    seed: int = 0
    # How the frozen stages are run for the cache: "auto" is onnxruntime on CPU and torch on CUDA;
    # "torch" forces the CUDA path's runtime on any device (so it is exercised without a GPU).
    stem_runtime: str = "auto"

    def flip_train(self, n_train: int) -> bool:
        """Whether a training set of ``n_train`` images gets its mirrored view cached too."""
        return n_train <= self.flip_train_max

    def pairs(self) -> list[tuple[int, float]]:
        if self.recipes is not None:
            return [(k, lr) for k, lr in self.recipes if k in self.blocks]
        return [(k, lr) for k in self.blocks for lr in self.lrs]


@dataclass
class SearchResult:
    model: nn.Module  # the winning fine-tuned net (timm EfficientNet, eval, CPU)
    backbone: str
    resolution: int
    tta: bool  # average the prediction of the image and its mirror
    weight: float  # fine-tune share of the blend with the quick head (0: the quick head alone)
    recipe: str  # human-readable name of the winner
    val_accuracy: float
    val_loss: float
    val_probabilities: np.ndarray  # of the selected blend
    candidates: list[dict[str, Any]]  # every candidate tried, with its val scores
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "completed"  # "completed" | "time_limit"
    seconds: float = 0.0
    # The winner's recipe, for ``refit``: stages fine-tuned (0: its linear probe), lr, selected
    # epoch, and the measured costs (seconds per training epoch, per cached image view).
    blocks: int = 0
    lr: float = 0.0
    epoch: int = 0
    n_train: int = 0
    epoch_seconds: float = 0.0
    view_seconds: float = 0.0
    # The best blend won validation, but by less than one standard error: the probe alone was kept.
    one_standard_error: bool = False
    #: the blend against the probe alone on validation: their accuracies in sample and cross-fitted
    #: (``cross_fitted_probs``), and which 1-SE check kept the probe ("in_sample", "cross_fitted"),
    #: or None when the blend passed both. None: no blend was selected.
    selection_check: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def _stem(model: nn.Module, x: torch.Tensor, stop: int) -> torch.Tensor:
    h = model.bn1(model.conv_stem(x))
    for block in list(model.blocks)[:stop]:
        h = block(h)
    return h


def _tail(model: nn.Module, h: torch.Tensor, start: int) -> torch.Tensor:
    """Pooled pre-classifier features from the activations entering stage ``start``."""
    for block in list(model.blocks)[start:]:
        h = block(h)
    return model.global_pool(model.bn2(model.conv_head(h)))


class _Stem(nn.Module):
    """The frozen stages before ``stop``, as a module (exported for onnxruntime on CPU)."""

    def __init__(self, model: nn.Module, stop: int) -> None:
        super().__init__()
        self.model = model
        self.stop = stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _stem(self.model, x, self.stop)


def _frozen(model: nn.Module) -> nn.Module:
    """The net in eval mode (frozen BatchNorm) with no gradients: loaded, cached or returned."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _stem_runner(
    model: nn.Module, stop: int, resolution: int, dev: torch.device, runtime: str = "auto"
) -> Callable[[np.ndarray], torch.Tensor]:
    """A function from a preprocessed batch to its stem activations on ``dev``.

    On CPU the frozen stem runs in onnxruntime (exported once, ~1 s): it is ~3x faster than eager
    torch for these graphs on 2 cores, and the cache pass is most of a CPU search's cost. On CUDA
    (or with ``runtime="torch"``) it stays in torch, on ``dev``.
    """
    if runtime not in ("auto", "torch"):
        raise ValueError(f"unknown stem runtime {runtime!r}")
    if dev.type == "cpu" and runtime == "auto":
        import tempfile

        stem = _Stem(model, stop).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = bb.export_graph(stem, Path(tmp) / "stem.onnx", resolution=resolution, outputs=["stem"])
            runner = bb.OnnxRunner(path)  # the session holds the graph in memory

        def run_ort(batch: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(runner.run(batch)["stem"]).half()

        return run_ort

    def run_torch(batch: np.ndarray) -> torch.Tensor:
        return _stem(model, torch.from_numpy(batch).to(dev), stop).half()

    return run_torch


@torch.no_grad()
def _cache(
    run: Callable[[np.ndarray], torch.Tensor],
    images: Sequence[bb.ImageInput],
    *,
    resolution: int,
    flip: bool,
    batch_size: int,
    should_stop: Callable[[], bool] | None,
) -> torch.Tensor:
    """float16 ``(V, N, C, H, W)`` stem activations (V=2 with the mirror view)."""
    views: list[list[torch.Tensor]] = [[], []] if flip else [[]]
    for start in range(0, len(images), batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("fine-tuning cancelled")
        x = bb.preprocess(images[start : start + batch_size], resolution)
        views[0].append(run(x))
        if flip:
            views[1].append(run(np.ascontiguousarray(x[:, :, :, ::-1])))
    return torch.stack([torch.cat(v) for v in views])


@torch.no_grad()
def _advance(model: nn.Module, cache: torch.Tensor, start: int, stop: int, batch_size: int) -> torch.Tensor:
    """Run frozen stages ``start:stop`` over a cache (the input of a smaller K)."""
    blocks = list(model.blocks)[start:stop]
    out = []
    for v in range(cache.shape[0]):
        chunks = []
        for i in range(0, cache.shape[1], batch_size):
            h = cache[v, i : i + batch_size].float()
            for block in blocks:
                h = block(h)
            chunks.append(h.half())
        out.append(torch.cat(chunks))
    return torch.stack(out)


@torch.no_grad()
def _pooled(model: nn.Module, cache: torch.Tensor, start: int, batch_size: int) -> torch.Tensor:
    """float32 ``(V, N, 1280)`` pooled features of the current model over a cache."""
    return torch.stack(
        [
            torch.cat(
                [
                    _tail(model, cache[v, i : i + batch_size].float(), start)
                    for i in range(0, cache.shape[1], batch_size)
                ]
            )
            for v in range(cache.shape[0])
        ]
    )


# --------------------------------------------------------------------------------------------
# Losses and scores
# --------------------------------------------------------------------------------------------


def _scores(probs: np.ndarray, targets: torch.Tensor, multi_label: bool) -> tuple[float, float]:
    """(accuracy, log loss) of probabilities; multi-label: per-label accuracy at 0.5 and mean BCE."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    y = targets.cpu().numpy()
    acc = float(_right(p, targets, multi_label).mean())
    if multi_label:
        loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    else:
        loss = float(-np.log(p[np.arange(len(y)), y]).mean())
    return acc, loss


def _right(probs: np.ndarray, targets: torch.Tensor, multi_label: bool) -> np.ndarray:
    """Per validation sample, the share it got right (single-label: 0/1; multi-label: of its labels at 0.5)."""
    y = targets.cpu().numpy()
    if multi_label:
        return ((probs >= 0.5) == (y >= 0.5)).mean(axis=1)
    return (probs.argmax(1) == y).astype(np.float64)


def simpler_holds(best_probs: np.ndarray, probe_probs: np.ndarray, targets: torch.Tensor, *, multi_label: bool) -> bool:
    """The one-standard-error rule: the probe alone stands unless the selected blend beats it on
    validation by more than one standard error of the paired difference.

    The blend is the best of dozens of (recipe, weight, flip) choices scored on the same few
    validation images, so its validation score is optimistic; the probe's recipe was chosen by
    cross-validation on the train split. On held-out photos (bench/finetune.py --holdout) blends
    that won validation by a few images lost to the probe alone.
    """
    d = _right(best_probs, targets, multi_label) - _right(probe_probs, targets, multi_label)
    if len(d) < 2:
        return True
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()) <= se


def validation_halves(targets: torch.Tensor, *, multi_label: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Validation indices in two halves, stratified by the (first) label, shuffled by ``seed``."""
    y = targets.cpu().numpy()
    key = y.argmax(1) if multi_label else y
    order = np.lexsort((np.random.default_rng(seed).random(len(y)), key))
    return order[0::2], order[1::2]


def cross_fitted_probs(
    pool: Sequence[dict[bool, np.ndarray]],
    probe_probs: np.ndarray,
    targets: torch.Tensor,
    *,
    multi_label: bool,
    weights: Sequence[float],
    seed: int = 0,
) -> np.ndarray:
    """The selection's validation probabilities out of sample: validation split in two halves
    (stratified by the first label), each half's images scored by the (candidate, flip, weight)
    that ``blend_choice`` selects on the other half. ``pool`` holds every candidate's fine-tune
    probabilities (flip False/True), as the search scored them.

    ``simpler_holds`` on these asks whether *choosing* a blend beats the probe on images the
    choice did not see; on the images that chose it, the winner of dozens of choices always looks
    better than it is.
    """
    halves = validation_halves(targets, multi_label=multi_label, seed=seed)
    out = np.array(probe_probs, dtype=np.float64, copy=True)
    for pick, score in (halves, halves[::-1]):
        if len(pick) == 0 or len(score) == 0:
            continue
        best, chosen = None, None
        for ft in pool:
            scored = blend_choice(
                {tta: p[pick] for tta, p in ft.items()},
                probe_probs[pick],
                targets[torch.as_tensor(pick)],
                multi_label=multi_label,
                weights=weights,
            )
            if best is None or _better(
                (scored["val_accuracy"], scored["val_loss"]), (best["val_accuracy"], best["val_loss"])
            ):
                best, chosen = scored, ft
        if best is None or chosen is None:
            continue
        out[score] = _mix(chosen[best["tta"]][score], probe_probs[score], best["weight"])
    return out


def _mix(ft: np.ndarray, quick: np.ndarray | None, weight: float) -> np.ndarray:
    """``weight * fine-tune + (1 - weight) * quick``, the blend ``ensemble.BlendGraph`` serves."""
    return ft * weight + (quick * (1 - weight) if weight < 1 else 0.0)


def _better(a: tuple[float, float], b: tuple[float, float] | None) -> bool:
    """Higher accuracy wins; equal accuracy (within float noise): lower loss."""
    if b is None:
        return True
    if abs(a[0] - b[0]) > 1e-9:
        return a[0] > b[0]
    return a[1] < b[1] - 1e-9


def blend_choice(
    ft_probs: dict[bool, np.ndarray],
    quick_probs: np.ndarray | None,
    targets: torch.Tensor,
    *,
    multi_label: bool,
    weights: Sequence[float],
) -> dict[str, Any]:
    """Best (tta, weight) on validation: ``w * fine-tune + (1 - w) * quick``.

    ``ft_probs`` maps tta False/True to the fine-tune's val probabilities. Without quick
    probabilities only w=1 is possible. Weight 0 ignores the fine-tune (scored once, tta False).
    """
    best: dict[str, Any] | None = None
    grid = sorted({float(w) for w in weights} | {1.0}) if quick_probs is not None else [1.0]
    for w in grid:
        for tta in (False, True) if w > 0 else (False,):
            if tta not in ft_probs:
                continue
            probs = _mix(ft_probs[tta], quick_probs, w)
            acc, loss = _scores(probs, targets, multi_label)
            if best is None or _better((acc, loss), (best["val_accuracy"], best["val_loss"])):
                best = {"tta": tta, "weight": w, "val_accuracy": acc, "val_loss": loss, "probs": probs}
    assert best is not None
    return best


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def _fit_probe(
    feats: torch.Tensor, targets: torch.Tensor, num_classes: int, multi_label: bool, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression on frozen pooled features (the LP of LP-FT)."""
    weight = torch.zeros(num_classes, feats.shape[1], device=feats.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=feats.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")
    labels = targets.to(feats.device)
    pos_weight = _pos_weight(targets).to(feats.device) if multi_label else None

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = feats @ weight.T + bias
        if multi_label:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


@torch.no_grad()
def _init_head(
    model: nn.Module,
    cache: torch.Tensor,
    start: int,
    targets: torch.Tensor,
    num_classes: int,
    multi_label: bool,
    config: SearchConfig,
) -> None:
    """Set the classifier before fine-tuning: the LP of LP-FT (a logistic regression on the frozen
    net's pooled features of every cached view; any K gives the same features) or zeros."""
    if config.head_init == "linear_probe":
        feats = _pooled(model, cache, start, 128)
        weight, bias = _fit_probe(
            feats.reshape(-1, feats.shape[-1]),
            targets.repeat(feats.shape[0], *([1] * (targets.ndim - 1))),
            num_classes,
            multi_label,
            config.probe_l2,
        )
    elif config.head_init == "zeros":
        weight, bias = torch.zeros_like(model.classifier.weight), torch.zeros_like(model.classifier.bias)
    else:
        raise ValueError(f"unknown head_init {config.head_init!r}")
    model.classifier.weight.copy_(weight)
    model.classifier.bias.copy_(bias)


@torch.no_grad()
def _val_probs(
    model: nn.Module, cache: torch.Tensor, start: int, batch_size: int, multi_label: bool
) -> dict[bool, np.ndarray]:
    """Val probabilities without (False) and with (True) test-time flip."""
    logits = model.classifier(_pooled(model, cache, start, batch_size))  # (V, N, C)
    probs = _probabilities(logits.reshape(-1, logits.shape[-1]), multi_label).reshape(logits.shape).cpu().numpy()
    out = {False: probs[0]}
    if probs.shape[0] > 1:
        out[True] = probs.mean(0)
    return out


def _lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class _Finetune:
    """Fine-tuning of a net's last stages on a stem cache: the optimizer, loss, lr schedule and
    per-epoch loop that a search candidate and the refit of its winner share.

    The lr schedule spans ``config.epochs`` whatever the run's length, so a refit stopped at the
    selected epoch has seen exactly the learning rates its candidate saw up to that epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        start: int,
        lr: float,
        config: SearchConfig,
        targets: torch.Tensor,
        multi_label: bool,
        rng: np.random.Generator,
    ) -> None:
        self.model, self.start, self.config, self.rng = model, start, config, rng
        dev = next(model.parameters()).device
        trainable = [*list(model.blocks)[start:], model.conv_head, model.bn2]
        body = [p for m in trainable for p in m.parameters()]
        head = list(model.classifier.parameters())
        for p in model.parameters():
            p.requires_grad_(False)
        for p in body + head:
            p.requires_grad_(True)
        self.params = body + head
        self.optimizer = torch.optim.AdamW(
            [
                {"params": head, "lr": lr, "base_lr": lr},
                {"params": body, "lr": lr * config.body_lr_mult, "base_lr": lr * config.body_lr_mult},
            ],
            weight_decay=config.weight_decay,
        )
        if multi_label:
            self.criterion: nn.Module = nn.BCEWithLogitsLoss(pos_weight=_pos_weight(targets).to(dev))
        else:
            self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.targets = targets.to(dev)
        self.n = len(targets)
        self.steps = max(1, math.ceil(self.n / config.batch_size))
        self.total = self.steps * config.epochs
        self.step = 0

    def epoch(
        self,
        cache: torch.Tensor,
        *,
        should_stop: Callable[[], bool] | None,
        remaining: Callable[[], float],
    ) -> tuple[float, int, bool]:
        """One pass over the cache (one random view per image): (mean loss, steps run, timed out)."""
        config, model, dev = self.config, self.model, self.targets.device
        order = torch.from_numpy(self.rng.permutation(self.n))
        view = torch.from_numpy(self.rng.integers(0, cache.shape[0], self.n))
        running = 0.0
        for s in range(self.steps):
            if should_stop is not None and should_stop():
                raise Cancelled("fine-tuning cancelled")
            if remaining() <= 0:
                return running / max(1, self.n), s, True
            idx = order[s * config.batch_size : (s + 1) * config.batch_size]
            x = cache[view[idx].to(dev), idx.to(dev)].float()
            factor = _lr_factor(self.step, self.total, config.warmup_fraction)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            f = _tail(model, x, self.start)
            f = nn.functional.dropout(f, p=config.drop_rate, training=True)
            loss = self.criterion(model.classifier(f), self.targets[idx.to(dev)])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.params, 5.0)
            self.optimizer.step()
            running += loss.item() * len(idx)
            self.step += 1
        return running / max(1, self.n), self.steps, False


def search(
    *,
    train_items: Sequence[Item],
    val_items: Sequence[Item],
    num_classes: int,
    multi_label: bool,
    quick_val_probabilities: np.ndarray | None = None,
    probe_name: str = "quick head",
    config: SearchConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Search fine-tuning recipes on ``train_items``, select on ``val_items`` (see the module doc).

    ``quick_val_probabilities``: the quick head's probabilities on ``val_items`` (same order),
    fitted on the same train items; when given, blends with it are candidates too. ``probe_name``
    names that head in the recipe's name ("quick head", "multi-layer probe").
    ``progress`` receives ``{"candidate", "epoch", "epochs", "loss", "val_accuracy", "val_loss",
    "progress", "phase"}`` after each validated epoch and at phase changes. ``should_stop`` is
    polled every step; True raises ``Cancelled``.
    """
    config = config or SearchConfig()
    if not train_items or not val_items:
        raise ValueError("the search needs training and validation items")
    if num_classes < 1 or (not multi_label and num_classes < 2):
        raise ValueError("single-label needs >= 2 classes, multi-label >= 1")
    started = time.monotonic()
    deadline = None if config.max_seconds is None else started + config.max_seconds
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dev = bb.device()
    train_images = [img for img, _ in train_items]
    val_images = [img for img, _ in val_items]
    y_train = _targets_tensor([t for _, t in train_items], num_classes, multi_label)
    y_val = _targets_tensor([t for _, t in val_items], num_classes, multi_label)
    if quick_val_probabilities is not None and quick_val_probabilities.shape != (len(val_items), num_classes):
        raise ValueError("quick_val_probabilities must be (len(val_items), num_classes)")
    flip_train = config.flip_train(len(train_images))
    pairs = config.pairs()
    if not pairs:
        raise ValueError("no (blocks, lr) recipe to try")
    k_max = max(k for k, _ in pairs)
    total_candidates = len(pairs) * len(config.backbones)
    candidates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None  # the selected candidate so far (with its blend)
    pool: list[dict[bool, np.ndarray]] = []  # every candidate's val probabilities (the cross-fitted check)
    stop_reason = "completed"
    seconds_per_view: float | None = None  # trunk seconds per image view, measured
    view_seconds: dict[str, float] = {}  # the same, per backbone (the refit's estimate)
    done = 0

    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    def report(**values: Any) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            frac = elapsed / config.max_seconds if config.max_seconds else done / max(1, total_candidates)
            progress({"progress": min(1.0, max(frac, done / max(1, total_candidates))), **values})

    def prepare(b_index: int, name: str) -> dict[str, Any] | None:
        """Cache the frozen stages of one backbone, fit its linear probe (a candidate itself)."""
        nonlocal best, stop_reason, seconds_per_view
        resolution = config.resolution or bb.get_spec(name).resolution
        views = (len(train_images) * (2 if flip_train else 1)) + 2 * len(val_images)
        if b_index > 0 and seconds_per_view is not None:
            # Scale the measured cost by the pixel count; skip a backbone whose cache cannot fit
            # with time left to train on it.
            prev_res = config.resolution or bb.get_spec(config.backbones[b_index - 1]).resolution
            estimate = seconds_per_view * views * (resolution / prev_res) ** 2 * 1.3
            if estimate * 1.25 > remaining():
                candidates.append(
                    {"backbone": name, "skipped": "time budget", "estimated_cache_seconds": round(estimate, 1)}
                )
                stop_reason = "time_limit"
                return None
        report(phase="caching", candidate=name, epoch=0, epochs=0)
        model = _frozen(bb.load_backbone(name, num_classes=num_classes).to(dev))
        n_blocks = len(model.blocks)
        stop = n_blocks - k_max
        t0 = time.monotonic()
        run = _stem_runner(model, stop, resolution, dev, config.stem_runtime)
        train_cache = _cache(
            run, train_images, resolution=resolution, flip=flip_train, batch_size=32, should_stop=should_stop
        ).to(dev)
        val_cache = _cache(
            run, val_images, resolution=resolution, flip=True, batch_size=32, should_stop=should_stop
        ).to(dev)
        del run
        seconds_per_view = (time.monotonic() - t0) / views
        view_seconds[name] = seconds_per_view
        caches = {k_max: (train_cache, val_cache)}
        for k in sorted({k for k, _ in pairs} - {k_max}):
            caches[k] = (
                _advance(model, train_cache, stop, n_blocks - k, 64),
                _advance(model, val_cache, stop, n_blocks - k, 64),
            )
        start_k = n_blocks - k_max
        _init_head(model, train_cache, start_k, y_train, num_classes, multi_label, config)
        base_state = copy.deepcopy(model.state_dict())
        probe_probs = _val_probs(model, val_cache, start_k, 128, multi_label)
        pool.append(probe_probs)
        scored = blend_choice(
            probe_probs, quick_val_probabilities, y_val, multi_label=multi_label, weights=config.weights
        )
        entry = {
            "backbone": name,
            "blocks": 0,
            "lr": 0.0,
            "epoch": 0,
            **{k: v for k, v in scored.items() if k != "probs"},
        }
        candidates.append(entry)
        if best is None or _better(
            (scored["val_accuracy"], scored["val_loss"]), (best["val_accuracy"], best["val_loss"])
        ):
            best = {**entry, "probs": scored["probs"], "state": base_state, "resolution": resolution}

        return {
            "name": name,
            "model": model,
            "caches": caches,
            "base_state": base_state,
            "n_blocks": n_blocks,
            "resolution": resolution,
        }

    def train(prep: dict[str, Any], k: int, lr: float) -> None:
        """One fine-tuning candidate on a prepared cache: best epoch by val loss, then its best blend."""
        nonlocal best, stop_reason, done
        name, model, caches, base_state = prep["name"], prep["model"], prep["caches"], prep["base_state"]
        n_blocks, resolution = prep["n_blocks"], prep["resolution"]
        if remaining() <= 0:
            stop_reason = "time_limit"
            return
        label = f"{name} · last {k} stage{'s' if k > 1 else ''} · lr {lr:g}"
        tr_cache, va_cache = caches[k]
        start = n_blocks - k
        model.load_state_dict(base_state)
        run = _Finetune(model, start=start, lr=lr, config=config, targets=y_train, multi_label=multi_label, rng=rng)
        cand_best: dict[str, Any] | None = None
        bad = 0
        epoch = 0
        train_seconds = 0.0
        for epoch in range(1, config.epochs + 1):
            t0 = time.monotonic()
            loss, steps_run, timed_out = run.epoch(tr_cache, should_stop=should_stop, remaining=remaining)
            train_seconds += time.monotonic() - t0
            if timed_out and steps_run == 0:
                stop_reason = "time_limit"
                break
            probs = _val_probs(model, va_cache, start, 128, multi_label)
            # early stopping on the (flip-averaged) val loss of the fine-tune alone
            v_acc, v_loss = _scores(probs[max(probs)], y_val, multi_label)
            history.append(
                {
                    "candidate": label,
                    "epoch": epoch,
                    "train_loss": loss,
                    "val_loss": v_loss,
                    "val_accuracy": v_acc,
                }
            )
            report(
                phase="validated",
                candidate=label,
                epoch=epoch,
                epochs=config.epochs,
                loss=loss,
                val_accuracy=v_acc,
                val_loss=v_loss,
            )
            if cand_best is None or v_loss < cand_best["loss"] - 1e-4:
                cand_best = {
                    "loss": v_loss,
                    "epoch": epoch,
                    "probs": probs,
                    "state": copy.deepcopy(model.state_dict()),
                }
                bad = 0
            else:
                bad += 1
            if timed_out:
                stop_reason = "time_limit"
                break
            if bad >= config.patience:
                break
        done += 1
        if cand_best is None:
            candidates.append({"backbone": name, "blocks": k, "lr": lr, "skipped": "time budget"})
            return
        pool.append(cand_best["probs"])
        scored = blend_choice(
            cand_best["probs"], quick_val_probabilities, y_val, multi_label=multi_label, weights=config.weights
        )
        entry = {
            "backbone": name,
            "blocks": k,
            "lr": lr,
            "epoch": cand_best["epoch"],
            "epochs_run": epoch,
            "epoch_seconds": round(train_seconds / max(1, epoch), 3),
            **{k2: v for k2, v in scored.items() if k2 != "probs"},
        }
        candidates.append(entry)
        if _better((scored["val_accuracy"], scored["val_loss"]), (best["val_accuracy"], best["val_loss"])):
            best = {**entry, "probs": scored["probs"], "state": cand_best["state"], "resolution": resolution}

    # Cheapest first across backbones: each backbone's cache, probe and K=min candidates, then the
    # deeper (costlier per epoch) candidates while the budget lasts, so a second backbone is not
    # starved by the first one's expensive recipes.
    ks = sorted({k for k, _ in pairs})
    prepared = []
    for b_index, name in enumerate(config.backbones):
        prep = prepare(b_index, name)
        if prep is None:
            continue
        prepared.append(prep)
        for k, lr in pairs:
            if k == ks[0]:
                train(prep, k, lr)
    for k_phase in ks[1:]:
        for prep in prepared:
            for k, lr in pairs:
                if k == k_phase:
                    train(prep, k, lr)
    prepared.clear()  # free the caches
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    assert best is not None
    check = None
    if quick_val_probabilities is not None and best["weight"] > 0:
        crossed = cross_fitted_probs(
            pool, quick_val_probabilities, y_val, multi_label=multi_label, weights=config.weights, seed=config.seed
        )
        probe_acc, probe_loss = _scores(quick_val_probabilities, y_val, multi_label)
        check = {
            "probe_val_accuracy": probe_acc,
            "selected_val_accuracy": float(best["val_accuracy"]),
            "cross_fitted_val_accuracy": _scores(crossed, y_val, multi_label)[0],
        }
        holds_in_sample = simpler_holds(best["probs"], quick_val_probabilities, y_val, multi_label=multi_label)
        holds_crossed = simpler_holds(crossed, quick_val_probabilities, y_val, multi_label=multi_label)
        check["probe_kept_by"] = "in_sample" if holds_in_sample else "cross_fitted" if holds_crossed else None
    if check is not None and check["probe_kept_by"]:
        best = {
            **best,
            "weight": 0.0,
            "tta": False,
            "val_accuracy": probe_acc,
            "val_loss": probe_loss,
            "probs": quick_val_probabilities,
            "one_standard_error": True,
        }
    final = bb.load_backbone(best["backbone"], num_classes=num_classes)
    final.load_state_dict({k: v.cpu() for k, v in best["state"].items()})
    final = _frozen(final)
    return SearchResult(
        model=final,
        backbone=best["backbone"],
        resolution=best["resolution"],
        tta=bool(best["tta"]),
        weight=float(best["weight"]),
        recipe=recipe_name(best, probe=probe_name),
        val_accuracy=float(best["val_accuracy"]),
        val_loss=float(best["val_loss"]),
        val_probabilities=np.asarray(best["probs"], dtype=np.float32),
        candidates=candidates,
        history=history,
        stop_reason=stop_reason,
        seconds=time.monotonic() - started,
        blocks=int(best["blocks"]),
        lr=float(best["lr"]),
        epoch=int(best["epoch"]),
        n_train=len(train_items),
        epoch_seconds=float(best.get("epoch_seconds", 0.0)),
        view_seconds=float(view_seconds.get(best["backbone"], 0.0)),
        one_standard_error=bool(best.get("one_standard_error")),
        selection_check=check,
    )


@dataclass
class Refit:
    """The search's winner retrained on every labeled item, or why it was not."""

    model: nn.Module | None  # the retrained net (eval, CPU); None: keep the search's model
    reason: str  # "refitted" | "quick_alone" (no net to retrain) | "time_budget" | "time_limit"
    seconds: float
    estimated_seconds: float
    n_items: int


def refit_estimate(result: SearchResult, n_items: int, config: SearchConfig | None = None) -> float:
    """Seconds a refit of ``result`` on ``n_items`` should take, from the costs the search measured:
    one cache pass (both views up to ``flip_train_max``) plus the selected epochs, scaled to the
    larger set, with a 30% margin."""
    config = config or SearchConfig()
    views = n_items * (2 if config.flip_train(n_items) else 1)
    epochs = result.epoch_seconds * result.epoch * n_items / max(1, result.n_train)
    return 1.3 * (result.view_seconds * views + epochs)


class _OutOfTime(Exception):
    pass


def refit(
    *,
    items: Sequence[Item],
    num_classes: int,
    multi_label: bool,
    result: SearchResult,
    config: SearchConfig | None = None,
    max_seconds: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Refit:
    """Retrain the search's selected recipe on ``items`` (every label, the search's held-out ones too).

    The search trains on its train split and holds out val (selection) and test (the reported
    estimate); the model a user serves should learn from all their labels, as the quick model does.
    Nothing is left to validate on, so the recipe is replayed exactly: the same backbone,
    resolution, K stages and lr, its LP head refitted on all items, trained for the epoch count the
    search selected on val (same lr schedule, same views). TTA and the blend weight are the
    caller's to keep. A refit that the measured costs say cannot finish within ``max_seconds`` is
    not started, and one that runs out of time is abandoned: the caller keeps the search's model.
    """
    config = config or SearchConfig()
    started = time.monotonic()
    n = len(items)
    if result.weight == 0.0:
        return Refit(None, "quick_alone", 0.0, 0.0, n)
    estimate = refit_estimate(result, n, config)
    if max_seconds is not None and estimate > max_seconds:
        return Refit(None, "time_budget", 0.0, round(estimate, 1), n)
    deadline = None if max_seconds is None else started + max_seconds

    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    def stop() -> bool:
        if should_stop is not None and should_stop():
            return True
        if remaining() <= 0:
            raise _OutOfTime
        return False

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dev = bb.device()
    targets = _targets_tensor([t for _, t in items], num_classes, multi_label)
    model = _frozen(bb.load_backbone(result.backbone, num_classes=num_classes).to(dev))
    start = len(model.blocks) - result.blocks
    try:
        if progress is not None:
            progress(0.0, f"caching the frozen stages of {result.backbone} for all {n} labeled images")
        run = _stem_runner(model, start, result.resolution, dev, config.stem_runtime)
        images = [img for img, _ in items]
        flip = config.flip_train(n)
        cache = _cache(run, images, resolution=result.resolution, flip=flip, batch_size=32, should_stop=stop).to(dev)
        del run
        _init_head(model, cache, start, targets, num_classes, multi_label, config)
        if result.blocks > 0:
            tune = _Finetune(
                model, start=start, lr=result.lr, config=config, targets=targets, multi_label=multi_label, rng=rng
            )
            for epoch in range(1, result.epoch + 1):
                if progress is not None:
                    progress(epoch / (result.epoch + 1), f"retraining on all {n} labels · epoch {epoch}/{result.epoch}")
                _, _, timed_out = tune.epoch(cache, should_stop=stop, remaining=remaining)
                if timed_out:
                    raise _OutOfTime
    except _OutOfTime:
        return Refit(None, "time_limit", round(time.monotonic() - started, 1), round(estimate, 1), n)
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return Refit(_frozen(model.cpu()), "refitted", round(time.monotonic() - started, 1), round(estimate, 1), n)


def recipe_name(c: dict[str, Any], *, probe: str = "quick head") -> str:
    """ "lite2 · last 1 stage (LP-FT) · flip TTA · 75% + 25% quick head", or "quick head alone"
    (``probe``: the name of the head blended with)."""
    if float(c["weight"]) == 0.0:
        if c.get("one_standard_error"):
            return f"{probe} alone (no blend beat it on validation by more than one standard error)"
        return f"{probe} alone (fine-tuning did not pay on validation)"
    parts = [c["backbone"]]
    parts.append(
        "linear probe"
        if c["blocks"] == 0
        else f"last {c['blocks']} stage{'s' if c['blocks'] > 1 else ''} fine-tuned (LP-FT, lr {c['lr']:g})"
    )
    if c["tta"]:
        parts.append("flip TTA")
    w = float(c["weight"])
    if w < 1:
        parts.append(f"blended {round(w * 100)}% with {round((1 - w) * 100)}% {probe}")
    return " · ".join(parts)
