"""The quick model: linear heads on stored backbone embeddings, fit with full-batch L-BFGS.

Pure numpy / PyTorch (no Django). Everything here is CPU-cheap on purpose: the "quick model" is
retrained whenever labels change, so a fit must take well under a second for ~1k samples.

Model
    single-label: softmax over ``C`` classes, ``p = softmax(X @ W + b)``
    multi-label:  ``C`` independent sigmoids, ``p = sigmoid(X @ W + b)``

Objective (what ``l2`` means)
    ``mean_i loss_i + 0.5 * l2 * ||W_s||^2`` where ``loss_i`` is the cross-entropy (single-label) or
    the sum over labels of the binary cross-entropy (multi-label), and ``W_s`` are the weights acting
    on *standardised* features ``(x - mean) / sd`` (statistics of the training matrix, with ``sd``
    shrunk halfway towards the average feature scale; see ``_standardise``). The bias is not
    penalised. Standardising makes L-BFGS converge in a few dozen iterations on L2-normalised
    embeddings (whose coordinates are ~0.03) and makes one ``l2`` grid fit every backbone. The fitted
    head folds the standardisation back into plain ``W``/``b`` so that prediction is ``X @ W + b`` on
    the raw embeddings. Because the loss is a *mean*, ``l2`` corresponds to scikit-learn's
    ``C = 1 / (l2 * n_samples)`` on the standardised features.

Speed
    Cross-validation fits every (fold, l2) pair *jointly*: one parameter tensor ``(M, D, C)``, one
    matmul ``X @ W`` of width ``M*C`` per L-BFGS iteration, and a separable objective (the sum of the
    M independent objectives, so its minimiser is the M individual minimisers). That is several
    times faster on 2 cores than M separate small fits. The first fit in a fresh process pays ~1-2 s
    for torch's thread pools; long-lived workers should call :func:`warm_up` once at start.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "DEFAULT_L2_GRID",
    "AutoMLResult",
    "CVResult",
    "LinearHead",
    "automl_fit",
    "choose_thresholds",
    "concat_features",
    "cross_validate",
    "fit_head",
    "fold_ids",
    "log_loss",
    "warm_up",
]

#: Default regularisation grid (see the module docstring for what ``l2`` means). Chosen by sweeping
#: 1e-4..10 in half-decades on lite0 embeddings of Fashion-MNIST (20-5,000 labels) and hymenoptera
#: (20-244 labels): the CV-log-loss optimum was 0.01-0.1 almost everywhere, 1.0 at 20 labels of
#: hymenoptera, and below 1e-2 the curve is flat (50 L-BFGS iterations regularise by themselves).
#: Three values keep a 1k-sample automl_fit near 1 s on 2 cores.
DEFAULT_L2_GRID: tuple[float, ...] = (1.0, 0.1, 0.01)

_STD_FLOOR = 1e-6
_EPS = 1e-7

#: torch threads for a fit. One by default: L-BFGS on a linear head is a long chain of small ops,
#: each an OpenMP parallel region, and on a 2-core machine shared with the web server, the
#: embedder and other jobs, two threads wait on each other at every region. Measured here with
#: other processes busy: a 1k x 1280 x 10 fit took a steady 0.11 s on one thread but 0.1-8.6 s on
#: two, a 1k-sample automl_fit 1.0 s against 0.6-26 s, a 10k one 20 s (6.7 s CPU) against 60 s
#: (22.7 s CPU: the second thread mostly spins). On an idle
#: machine two threads gain at most ~2x on large N; set PICTOR_HEAD_THREADS=2 (or 0 = torch's
#: default) for a dedicated worker.
HEAD_THREADS = int(os.environ.get("PICTOR_HEAD_THREADS", "1"))


class _torch_threads:
    """Temporarily set torch's intra-op thread count (restored on exit)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.prev = 0

    def __enter__(self) -> None:
        self.prev = torch.get_num_threads()
        if self.n != self.prev:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        if torch.get_num_threads() != self.prev:
            torch.set_num_threads(self.prev)


# --------------------------------------------------------------------------------------------
# The fitted head
# --------------------------------------------------------------------------------------------


@dataclass
class LinearHead:
    """A fitted linear head: ``W`` (D, C) and ``b`` (C,) as float32, acting on raw embeddings."""

    W: np.ndarray
    b: np.ndarray
    multi_label: bool
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.W = np.ascontiguousarray(self.W, dtype=np.float32)
        self.b = np.ascontiguousarray(self.b, dtype=np.float32).reshape(-1)
        if self.W.ndim != 2 or self.W.shape[1] != self.b.shape[0]:
            raise ValueError(f"W {self.W.shape} and b {self.b.shape} do not match")

    @property
    def n_features(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.W.shape[1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits ``(N, C)`` float32."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (N, {self.n_features}) features, got {X.shape}")
        return X @ self.W + self.b

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, C)`` float32: softmax rows (single-label) or sigmoids (multi-label)."""
        z = self.decision_function(X)
        if self.multi_label:
            return _sigmoid(z)
        return _softmax(z)

    def to_bytes(self) -> bytes:
        """Serialise as an ``.npz`` archive (no pickle; loadable with ``np.load``)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            W=self.W,
            b=self.b,
            multi_label=np.array(bool(self.multi_label)),
            meta_json=np.array(_json_dumps(self.meta)),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LinearHead:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = _json_loads(str(z["meta_json"])) if "meta_json" in z.files else {}
            return cls(W=z["W"], b=z["b"], multi_label=bool(z["multi_label"]), meta=meta)


def _json_dumps(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True, default=float)


def _json_loads(text: str) -> dict:
    import json

    return json.loads(text) if text else {}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------


def _check_X(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    return X


def _check_y(y: np.ndarray, n: int, multi_label: bool, n_classes: int | None) -> tuple[np.ndarray, int]:
    y = np.asarray(y)
    if multi_label:
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"multi-label targets must be a (N, C) 0/1 matrix, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("multi-label targets must be 0/1")
        c = y.shape[1] if n_classes is None else int(n_classes)
        if c != y.shape[1]:
            raise ValueError(f"n_classes={n_classes} but targets have {y.shape[1]} columns")
        return y.astype(np.float32), c
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"single-label targets must be (N,) class indices, got {y.shape}")
    if n and not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.array_equal(y, np.round(y))):
            raise ValueError("single-label targets must be integer class indices")
    if n and y.min() < 0:
        raise ValueError("single-label targets must be non-negative class indices")
    c = int(y.max()) + 1 if n else 0
    if n_classes is not None:
        if c > n_classes:
            raise ValueError(f"class index {c - 1} out of range for n_classes={n_classes}")
        c = int(n_classes)
    return y.astype(np.int64), c


# --------------------------------------------------------------------------------------------
# The solver: M independent heads fit jointly with one L-BFGS
# --------------------------------------------------------------------------------------------


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, and scale each feature by a *shrunk* standard deviation.

    ``sd_j = sqrt(0.5 * var_j + 0.5 * mean(var))``: halfway between per-feature standardisation
    (good conditioning, so L-BFGS converges fast) and one global scale (isotropic L2 on the raw
    embedding geometry). Pure per-feature standardisation blew up features that happened to be
    nearly constant among a handful of labels: on 20 typicality-picked Fashion-MNIST images it
    scored 0.60 test accuracy against 0.70 for the shrunk version (scalar: 0.69, but 40 % slower to
    fit); from 1k labels on all three agree within a point.
    """
    mu = X.mean(axis=0, dtype=np.float64)
    var = X.var(axis=0, dtype=np.float64)
    sd = np.sqrt(0.5 * var + 0.5 * var.mean())
    sd = np.maximum(sd, _STD_FLOOR).astype(np.float32)
    mu = mu.astype(np.float32)
    return (X - mu) / sd, mu, sd


def _balanced(weights: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Reweight each model's training rows so every present class carries the same total weight.

    The labeled set is not a sample of the data: the active learner's picks (and a team's habits)
    skew its class shares, and an unweighted head, strongly regularised at small N, then answers the
    majority label for everything (12 ants/bees labels, 9 of them ants: every prediction "ants").
    Balanced weights helped or tied on all four sets of bench/learning.py, in both orders.
    """
    out = np.asarray(weights, dtype=np.float64).copy()
    for j in range(out.shape[0]):
        sel = out[j] > 0
        counts = np.bincount(y[sel], minlength=n_classes).astype(np.float64)
        present = int((counts > 0).sum())
        if present == 0:
            continue
        cw = np.where(counts > 0, sel.sum() / (present * np.maximum(counts, 1.0)), 0.0)
        out[j] = out[j] * cw[y]
    return out.astype(np.float32)


def _fit_many(
    Xs: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    l2s: np.ndarray,
    *,
    n_classes: int,
    multi_label: bool,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit M heads on standardised ``Xs`` (N, D) at once.

    ``weights`` (M, N): 1 where sample n is in model m's training set, else 0.
    ``l2s`` (M,): each model's penalty. Returns W (M, D, C), b (M, C) in standardised space.
    """
    n, d = Xs.shape
    m = weights.shape[0]
    c = n_classes
    if not multi_label:
        weights = _balanced(weights, y, c)
    X = torch.from_numpy(Xs)
    wt = torch.from_numpy((weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32))
    lam = torch.from_numpy(np.asarray(l2s, dtype=np.float32))

    W = torch.zeros(d, m * c, dtype=torch.float32, requires_grad=True)
    # Start the bias at the (smoothed) training prior: a good, cheap first point for L-BFGS.
    b0 = np.zeros((m, c), dtype=np.float32)
    for j in range(m):
        sel = weights[j] > 0
        if multi_label:
            prior = (y[sel].sum(axis=0) + 0.5) / (sel.sum() + 1.0)
            b0[j] = np.log(prior) - np.log1p(-prior)
        else:
            counts = np.bincount(y[sel], weights=weights[j, sel], minlength=c).astype(np.float64) + 0.5
            b0[j] = np.log(counts / counts.sum())
    b = torch.tensor(b0.reshape(-1), requires_grad=True)

    if multi_label:
        T = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))  # (N, C)
    else:
        yt = torch.from_numpy(y)

    def objective() -> torch.Tensor:
        z = (X @ W + b).view(n, m, c)
        if multi_label:
            # sum over labels of BCE-with-logits, per (sample, model)
            per = torch.nn.functional.softplus(z) - z * T.unsqueeze(1)
            per = per.sum(dim=2)  # (N, M)
        else:
            lse = torch.logsumexp(z, dim=2)  # (N, M)
            picked = z.gather(2, yt.view(n, 1, 1).expand(n, m, 1)).squeeze(2)
            per = lse - picked
        data = (per * wt.T).sum()
        reg = 0.5 * (lam * W.view(d, m, c).pow(2).sum(dim=(0, 2))).sum()
        return data + reg

    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        loss = objective()
        loss.backward()
        return loss

    threads = HEAD_THREADS if HEAD_THREADS > 0 else torch.get_num_threads()
    # enable_grad: callers may sit inside torch.inference_mode()/no_grad() (e.g. a serving thread)
    with _torch_threads(threads), torch.enable_grad():
        opt.step(closure)
    Wn = W.detach().numpy().reshape(d, m, c).transpose(1, 0, 2).copy()
    bn = b.detach().numpy().reshape(m, c).copy()
    return Wn, bn


def _unstandardise(Ws: np.ndarray, bs: np.ndarray, mu: np.ndarray, sd: np.ndarray):
    W = Ws / sd[:, None]
    b = bs - mu @ W
    return W.astype(np.float32), b.astype(np.float32)


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    *,
    multi_label: bool,
    l2: float,
    max_iter: int = 50,
    n_classes: int | None = None,
) -> LinearHead:
    """Fit one head on all of ``X`` (N, D).

    ``y``: (N,) int class indices (single-label) or an (N, C) 0/1 matrix (multi-label).
    ``n_classes`` (single-label) widens the head to classes that have no example yet (their
    probability is driven down by the bias). Returns a :class:`LinearHead` on raw features.
    """
    X = _check_X(X)
    y, c = _check_y(y, X.shape[0], multi_label, n_classes)
    if X.shape[0] == 0 or c == 0:
        raise ValueError("cannot fit a head without samples or classes")
    Xs, mu, sd = _standardise(X)
    Ws, bs = _fit_many(
        Xs,
        y,
        np.ones((1, X.shape[0]), dtype=np.float32),
        np.array([l2]),
        n_classes=c,
        multi_label=multi_label,
        max_iter=max_iter,
    )
    W, b = _unstandardise(Ws[0], bs[0], mu, sd)
    return LinearHead(W=W, b=b, multi_label=multi_label, meta={"l2": float(l2), "n_train": int(X.shape[0])})


# --------------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------------


def fold_ids(y: np.ndarray, k: int, *, multi_label: bool, seed: int = 0) -> np.ndarray:
    """Stratified fold assignment (N,) with values in ``[0, k)``.

    Each class's samples are shuffled and dealt round-robin, continuing where the previous class
    stopped, so every fold gets its share of each class and classes with fewer than ``k`` examples
    (even a single one) are spread over different folds instead of raising. Multi-label samples are
    stratified on their rarest positive label (samples with no positive form their own group).
    """
    y = np.asarray(y)
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    if multi_label:
        freq = y.sum(axis=0)
        # rarest positive label per row; rows without positives get group C
        masked = np.where(y > 0, freq[None, :], np.inf)
        groups = np.where(np.isfinite(masked.min(axis=1)), masked.argmin(axis=1), y.shape[1])
    else:
        groups = y
    folds = np.empty(n, dtype=np.int64)
    offset = 0
    uniq, counts = np.unique(groups, return_counts=True)
    # big groups first so that small ones fill the folds the big ones left short
    for g in uniq[np.argsort(-counts, kind="stable")]:
        idx = np.flatnonzero(groups == g)
        rng.shuffle(idx)
        folds[idx] = (offset + np.arange(idx.size)) % k
        offset = (offset + idx.size) % k
    return folds


def _n_folds(n: int, k: int) -> int:
    """Folds actually used: at most ``k``, 3 from 5,000 rows (cost; 3.3k+ training rows per fold
    are plenty for a linear head), never more than N."""
    if n >= 5_000:
        k = min(k, 3)
    return max(0, min(k, n))


@dataclass
class CVResult:
    """Out-of-fold probabilities for every labeled sample, for each candidate l2."""

    l2s: list[float]
    oof: np.ndarray  # (L, N, C) float32
    folds: np.ndarray  # (N,) fold id
    k: int


def _cv_many(
    X: np.ndarray,
    y: np.ndarray,
    *,
    multi_label: bool,
    n_classes: int,
    l2s: Sequence[float],
    k: int,
    seed: int,
    max_iter: int,
) -> CVResult:
    n = X.shape[0]
    kk = _n_folds(n, k)
    L = len(l2s)
    if kk < 2:
        # Not enough samples for any held-out estimate: report the smoothed label prior.
        if multi_label:
            prior = (y.sum(axis=0) + 0.5) / (n + 1.0)
        else:
            prior = np.bincount(y, minlength=n_classes) + 0.5
            prior = prior / prior.sum()
        oof = np.broadcast_to(prior.astype(np.float32), (L, n, n_classes)).copy()
        return CVResult(list(map(float, l2s)), oof, np.zeros(n, dtype=np.int64), kk)
    folds = fold_ids(y, kk, multi_label=multi_label, seed=seed)
    # Standardise with the statistics of all labeled rows: unsupervised, so no label leaks.
    Xs, _, _ = _standardise(X)
    masks = np.stack([(folds != f).astype(np.float32) for f in range(kk)])  # (K, N)
    weights = np.repeat(masks, L, axis=0)  # model index = fold * L + l
    lam = np.tile(np.asarray(l2s, dtype=np.float32), kk)
    Ws, bs = _fit_many(Xs, y, weights, lam, n_classes=n_classes, multi_label=multi_label, max_iter=max_iter)
    oof = np.empty((L, n, n_classes), dtype=np.float32)
    for f in range(kk):
        rows = folds == f
        for li in range(L):
            z = Xs[rows] @ Ws[f * L + li] + bs[f * L + li]
            oof[li, rows] = _sigmoid(z) if multi_label else _softmax(z)
    return CVResult(list(map(float, l2s)), oof, folds, kk)


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    *,
    multi_label: bool,
    l2: float,
    k: int = 5,
    seed: int = 0,
    max_iter: int = 50,
    n_classes: int | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities ``(N, C)`` from stratified k-fold CV of one head.

    ``k`` is reduced to 3 at N >= 5,000 and to N for tiny sets. Classes with fewer than ``k``
    examples are spread over folds (see :func:`fold_ids`); when such a sample is held out, its class
    may be absent from the training folds and its out-of-fold probability is honestly low. With
    fewer than 2 samples there is nothing to hold out and the smoothed label prior is returned.
    """
    X = _check_X(X)
    y, c = _check_y(y, X.shape[0], multi_label, n_classes)
    res = _cv_many(X, y, multi_label=multi_label, n_classes=c, l2s=[l2], k=k, seed=seed, max_iter=max_iter)
    return res.oof[0]


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def log_loss(probs: np.ndarray, y: np.ndarray, *, multi_label: bool) -> float:
    """Mean negative log-likelihood (multi-label: summed over labels, averaged over samples)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    if multi_label:
        Y = np.asarray(y, dtype=np.float64)
        return float(-(Y * np.log(p) + (1 - Y) * np.log1p(-p)).sum(axis=1).mean())
    y = np.asarray(y)
    return float(-np.log(p[np.arange(y.size), y]).mean())


def _accuracy(probs: np.ndarray, y: np.ndarray, multi_label: bool, thresholds=None) -> float:
    if multi_label:
        t = 0.5 if thresholds is None else thresholds
        return float(((probs >= t) == (y > 0)).all(axis=1).mean())
    return float((probs.argmax(axis=1) == y).mean())


def _macro_f1(probs: np.ndarray, y: np.ndarray, multi_label: bool, thresholds=None) -> float:
    """Macro F1 over the classes present in ``y`` (multi-label: over labels with a positive)."""
    if multi_label:
        t = 0.5 if thresholds is None else thresholds
        pred = probs >= t
        truth = y > 0
    else:
        c = probs.shape[1]
        pred = np.eye(c, dtype=bool)[probs.argmax(axis=1)]
        truth = np.eye(c, dtype=bool)[y]
    tp = (pred & truth).sum(axis=0)
    fp = (pred & ~truth).sum(axis=0)
    fn = (~pred & truth).sum(axis=0)
    present = truth.sum(axis=0) > 0
    if not present.any():
        return 0.0
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(f1[present].mean())


# --------------------------------------------------------------------------------------------
# Thresholds (multi-label)
# --------------------------------------------------------------------------------------------


def choose_thresholds(oof_probs: np.ndarray, Y: np.ndarray, *, default: float = 0.5) -> np.ndarray:
    """Per-label decision threshold (C,) maximising F1 on out-of-fold probabilities.

    Candidates are the observed probabilities; the chosen threshold is the midpoint between the
    best cut's lowest accepted score and the next lower score (so it generalises a little better
    than the exact score). Labels without any positive (or without any sample) keep ``default``.
    """
    P = np.asarray(oof_probs, dtype=np.float64)
    Y = np.asarray(Y) > 0
    if P.shape != Y.shape or P.ndim != 2:
        raise ValueError(f"oof_probs {P.shape} and Y {Y.shape} must be the same (N, C) shape")
    n, c = P.shape
    out = np.full(c, default, dtype=np.float32)
    for j in range(c):
        pos = int(Y[:, j].sum())
        if pos == 0:
            continue
        order = np.argsort(-P[:, j], kind="stable")
        s = P[order, j]
        t = Y[order, j]
        tp = np.cumsum(t)
        k = np.arange(1, n + 1)  # predicted positives when cutting after position k-1
        # only cut between distinct scores
        distinct = np.r_[s[1:] < s[:-1], True]
        f1 = np.where(distinct, 2 * tp / (k + pos), -1.0)
        best = int(np.argmax(f1))
        lo = s[best]
        nxt = s[best + 1] if best + 1 < n else 0.0
        out[j] = np.float32(np.clip(0.5 * (lo + nxt), 1e-6, 1 - 1e-6))
    return out


# --------------------------------------------------------------------------------------------
# AutoML: choose backbone features and l2 by CV, refit
# --------------------------------------------------------------------------------------------


@dataclass
class AutoMLResult:
    feature_key: str  # "lite0", "lite2" or "lite0+lite2"
    l2: float
    head: LinearHead  # fit on all labeled rows of features[feature_key]
    oof_probs: np.ndarray  # (N, C) out-of-fold probabilities of the chosen (feature_key, l2)
    cv_table: list[dict]  # one row per candidate: feature_key, l2, log_loss, accuracy, macro_f1
    k: int  # folds used (0/1: too few samples, no CV)
    thresholds: np.ndarray | None  # (C,) multi-label decision thresholds from OOF; None otherwise
    seconds: float
    # "cross_validation" (k-fold), "leave_one_out" (tiny sets), "none" (too few to hold any out)
    evaluation: str = "cross_validation"
    skipped: list[str] = field(default_factory=list)  # candidates left out by the cost cap

    def build(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The raw matrix the head expects, from per-feature rows (what the server builds too)."""
        parts = self.feature_key.split("+")
        return features[parts[0]] if len(parts) == 1 else concat_features([features[p] for p in parts])


#: Keys of classic (non-ImageNet) features: PCA-projected and whitened before the head, on the pool.
CLASSIC = ("pixels",)
#: PCA components kept for a classic feature (at most; never more than the pool allows).
PCA_COMPONENTS = 40


def candidate_keys(available: Sequence[str]) -> list[str]:
    """Feature sets tried, cheapest and most often right first (so a cost cap drops the rest):
    each backbone, the classic feature, then "lite0+lite2" and each backbone with the classic one."""
    singles = [k for k in available if "+" not in k]
    backbones = [k for k in singles if k not in CLASSIC]
    classic = [k for k in singles if k in CLASSIC]
    keys = list(singles)
    if len(backbones) >= 2:
        keys.append("+".join(backbones))
    for c in classic:
        keys += [f"{b}+{c}" for b in backbones]  # each backbone with the classic feature
    return keys


def _combine(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The candidate feature sets (raw, as :func:`concat_features` builds them at prediction)."""
    cands = {key: _check_X(val) for key, val in features.items()}
    if not cands:
        raise ValueError("features is empty")
    n = {v.shape[0] for v in cands.values()}
    if len(n) != 1:
        raise ValueError(f"feature sets disagree on the number of rows: {sorted(n)}")
    out = {}
    for key in candidate_keys(list(cands)):
        parts = key.split("+")
        out[key] = cands[key] if len(parts) == 1 else concat_features([cands[p] for p in parts])
    return out


def pca_transform(pool: np.ndarray, *, components: int = PCA_COMPONENTS) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), P (D, k)) so that ``(x - mean) @ P`` are whitened principal components.

    Fit on the whole pool (labeled and unlabeled rows: unsupervised, so nothing leaks), which is
    what makes "eigen-digits/eigenfaces" better than raw pixels at a handful of labels: the labeled
    few are projected on directions estimated from thousands.
    """
    X = np.asarray(pool, dtype=np.float64)
    mu = X.mean(axis=0)
    k = int(max(1, min(components, X.shape[0] - 1, X.shape[1])))
    _, s, vt = np.linalg.svd(X - mu, full_matrices=False)
    sd = s[:k] / math.sqrt(max(X.shape[0] - 1, 1))
    # whitened, then scaled to total variance 1 like an L2-normalised embedding, so that in a
    # combination with a backbone neither block drowns the other
    P = vt[:k].T / np.maximum(sd, 1e-6) / math.sqrt(k)
    return mu.astype(np.float32), P.astype(np.float32)


def _affine_for(key: str, dims: Mapping[str, int], pcas: Mapping[str, tuple[np.ndarray, np.ndarray]]):
    """(m, P) of the whole candidate: PCA blocks for classic parts, identity for backbones.
    Raw candidate rows x map to (x - m) @ P; a head there folds back into one on raw rows."""
    parts = key.split("+")
    if not any(p in pcas for p in parts):
        return None
    scale = 1.0 / math.sqrt(len(parts)) if len(parts) > 1 else 1.0  # concat_features' scaling
    ms, blocks = [], []
    for p in parts:
        if p in pcas:
            mu, P = pcas[p]
            ms.append(mu * scale)
            blocks.append(P / scale)  # undo the concat scaling so the PCA sees raw pixels
        else:
            ms.append(np.zeros(dims[p], np.float32))
            blocks.append(None)
    total_in = sum(dims[p] for p in parts)
    total_out = sum(dims[p] if b is None else b.shape[1] for p, b in zip(parts, blocks))
    M = np.zeros((total_in, total_out), np.float32)
    r = c = 0
    for p, b in zip(parts, blocks):
        if b is None:
            M[r : r + dims[p], c : c + dims[p]] = np.eye(dims[p], dtype=np.float32)
            r, c = r + dims[p], c + dims[p]
        else:
            M[r : r + b.shape[0], c : c + b.shape[1]] = b
            r, c = r + b.shape[0], c + b.shape[1]
    return np.concatenate(ms).astype(np.float32), M


def _classic_bases(
    features: Mapping[str, np.ndarray], n_labeled: int, pool: Mapping[str, np.ndarray] | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The PCA basis of each classic feature among ``features``, fit on ``pool[key]`` when given."""
    out = {}
    for key in features:
        if key in CLASSIC:
            src = features[key]
            pooled = pool.get(key) if pool is not None else None
            if pooled is not None and pooled.ndim == 2 and len(pooled) and pooled.shape[1] == src.shape[1]:
                src = pooled  # (an empty or missing store: the labeled rows)
            # whitened components amplify noise: keep about one per 3 labels (15 at 50 labels of
            # digits scored 0.82 against 0.65 with 60), at most PCA_COMPONENTS
            out[key] = pca_transform(src, components=int(min(PCA_COMPONENTS, max(8, n_labeled // 3))))
    return out


def _folded(head: LinearHead, aff) -> LinearHead:
    """A head fit on ``(x - m) @ M`` as one on raw rows x: logits = x @ (M W) + (b - m M W)."""
    if aff is None:
        return head
    W_raw = aff[1] @ head.W
    return LinearHead(W=W_raw, b=head.b - aff[0] @ W_raw, multi_label=head.multi_label, meta=head.meta)


def concat_features(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The features a "a+b" key stands for (what the server must build at prediction time)."""
    return (
        np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1) / np.float32(math.sqrt(len(parts)))
    ).astype(np.float32)


#: Below this many labeled rows the quick model is evaluated by leave-one-out instead of k-fold
#: (at 20 rows 5-fold leaves 16 per fit; LOO there cost 2x the time of the whole search):
#: LOO costs N fits, cheap at this size, and uses every label but one for each prediction.
LOO_BELOW = 20
#: Below this many labeled rows nothing is held out at all (metrics are in-sample, not honest).
NO_CV_BELOW = 4


def evaluation_for(n: int) -> str:
    """How the quick model of ``n`` labeled rows is evaluated (what the metrics say)."""
    if n < NO_CV_BELOW:
        return "none"
    return "leave_one_out" if n < LOO_BELOW else "cross_validation"


def automl_fit(
    features: Mapping[str, np.ndarray],
    y: np.ndarray,
    *,
    multi_label: bool,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    k: int = 5,
    seed: int = 0,
    max_iter: int = 50,
    cv_max_iter: int = 30,
    n_classes: int | None = None,
    tune_rows: int = 4_000,
    pool: Mapping[str, np.ndarray] | None = None,
    max_seconds: float | None = None,
) -> AutoMLResult:
    """Pick the feature set and ``l2`` by cross-validation, refit on everything.

    ``features``: ``{"lite0": (N, D0), "lite2": (N, D2), "pixels": (N, Dp)}`` (any non-empty
    subset); candidates are listed by :func:`candidate_keys` (singles, "lite0+lite2", "lite2+pixels").
    Classic features (``CLASSIC``) are PCA-whitened with a basis fit on ``pool[key]`` (all of the
    project's rows of that feature; the labeled rows when ``pool`` is None); the projection is folded
    into the returned head, which acts on the raw concatenation like every other head.

    Evaluation: k-fold from ``LOO_BELOW`` (30) rows, leave-one-out below, none below ``NO_CV_BELOW``
    (4) rows (``AutoMLResult.evaluation``). ``max_seconds``: once spent, the remaining candidates
    (combinations come last) are skipped and listed in ``AutoMLResult.skipped``.

    Selection score: mean out-of-fold log-loss (lower is better); accuracy and macro-F1 are reported
    next to it. Log-loss is a proper scoring rule: unlike accuracy it does not tie at small N (20
    labels give accuracy steps of 5 points), it rewards calibrated probabilities, which the
    active learner's margins and the confidences shown to users depend on, and it is the quantity
    the head actually minimises. Ties (within 1e-4) go to the stronger regularisation and the
    earlier (cheaper) candidate.

    Cost control: all (fold, l2) pairs of one feature set are solved as one joint L-BFGS problem.
    Above ``tune_rows`` samples, l2 (and the feature set) is chosen on a stratified subsample of at
    most ``tune_rows`` rows and l2 rescaled by the subsample's share of the rows, then one k-fold run
    at that l2 gives the out-of-fold probabilities for all rows. From 5,000 rows on, k is capped at 3.
    """
    t0 = time.perf_counter()
    raw = {key: _check_X(val) for key, val in features.items()}
    cands = _combine(raw)
    first = next(iter(cands.values()))
    n = first.shape[0]
    y, c = _check_y(y, n, multi_label, n_classes)
    if n == 0 or c == 0:
        raise ValueError("cannot fit without labeled samples")
    grid = sorted({float(v) for v in l2_grid}, reverse=True)  # strongest first (tie-break)
    if not grid:
        raise ValueError("l2_grid is empty")
    evaluation = evaluation_for(n)
    if evaluation == "leave_one_out":
        k = n
    elif evaluation == "none":
        k = 1
    dims = {key: v.shape[1] for key, v in raw.items()}
    pcas = _classic_bases(raw, n, pool)

    def transformed(key: str) -> tuple[np.ndarray, tuple | None]:
        aff = _affine_for(key, dims, pcas)
        X = cands[key]
        return (X if aff is None else np.ascontiguousarray((X - aff[0]) @ aff[1])), aff

    table: list[dict] = []
    skipped: list[str] = []
    best = None
    for fi, key in enumerate(cands):
        if max_seconds is not None and best is not None and time.perf_counter() - t0 > max_seconds:
            skipped.append(key)
            continue
        X, _ = transformed(key)
        sub_rows = None
        scale = 1.0
        if n > tune_rows and len(grid) > 1:
            folds = fold_ids(y, max(2, int(math.ceil(n / tune_rows))), multi_label=multi_label, seed=seed)
            sub_rows = np.flatnonzero(folds == 0)
            scale = sub_rows.size / n
        Xt = X if sub_rows is None else X[sub_rows]
        yt = y if sub_rows is None else y[sub_rows]
        res = _cv_many(Xt, yt, multi_label=multi_label, n_classes=c, l2s=grid, k=k, seed=seed, max_iter=cv_max_iter)
        scores = []
        for li, l2 in enumerate(grid):
            p = res.oof[li]
            row = {
                "feature_key": key,
                "l2": l2 * scale,
                "log_loss": log_loss(p, yt, multi_label=multi_label),
                "accuracy": _accuracy(p, yt, multi_label),
                "macro_f1": _macro_f1(p, yt, multi_label),
                "n_eval": int(yt.shape[0]),
            }
            table.append(row)
            scores.append(row["log_loss"])
        li = int(np.flatnonzero(np.asarray(scores) <= min(scores) + 1e-4)[0])
        cand = (scores[li], fi, li, key, grid[li] * scale, res.oof[li] if sub_rows is None else None, res.k)
        if best is None or cand[0] < best[0] - 1e-4:
            best = cand
    assert best is not None
    _, _, _, key, l2, oof, kk = best
    X, aff = transformed(key)
    if oof is None:
        res = _cv_many(X, y, multi_label=multi_label, n_classes=c, l2s=[l2], k=k, seed=seed, max_iter=cv_max_iter)
        oof, kk = res.oof[0], res.k
    head = _folded(fit_head(X, y, multi_label=multi_label, l2=l2, max_iter=max_iter, n_classes=c), aff)
    head.meta.update({"feature_key": key, "cv_folds": int(kk), "evaluation": evaluation})
    thresholds = choose_thresholds(oof, y) if multi_label and evaluation != "none" else None
    if multi_label and thresholds is None:
        thresholds = np.full(c, 0.5, np.float32)
    if thresholds is not None:
        head.meta["thresholds"] = [float(t) for t in thresholds]
    return AutoMLResult(
        feature_key=key,
        l2=float(l2),
        head=head,
        oof_probs=oof,
        cv_table=table,
        k=int(kk),
        thresholds=thresholds,
        seconds=time.perf_counter() - t0,
        evaluation=evaluation,
        skipped=skipped,
    )


def warm_up() -> None:
    """Run one tiny fit so torch's thread pools and allocator are ready (call once per worker)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 32)).astype(np.float32)
    fit_head(X, np.arange(64) % 4, multi_label=False, l2=1e-2, max_iter=5)


def refit_recipe(
    features: Mapping[str, np.ndarray],
    y: np.ndarray,
    *,
    feature_key: str,
    l2: float,
    multi_label: bool,
    n_classes: int | None = None,
    pool: Mapping[str, np.ndarray] | None = None,
) -> LinearHead:
    """One fit of a known recipe (feature key, l2) on new labels, no search: what the queue ranks
    with when the latest AutoML result missed some labels (~0.1 s instead of a full search). A
    classic feature goes through the same whitened PCA as in :func:`automl_fit` (basis fit on
    ``pool[key]``), so ``l2`` means what it meant there."""
    parts = feature_key.split("+")
    X = features[parts[0]] if len(parts) == 1 else concat_features([features[p] for p in parts])
    X = _check_X(X)
    used = {p: features[p] for p in parts}
    aff = _affine_for(feature_key, {p: v.shape[1] for p, v in used.items()}, _classic_bases(used, X.shape[0], pool))
    if aff is not None:
        X = np.ascontiguousarray((X - aff[0]) @ aff[1])
    head = _folded(fit_head(X, y, multi_label=multi_label, l2=l2, n_classes=n_classes), aff)
    head.meta["feature_key"] = feature_key
    return head
