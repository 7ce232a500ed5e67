"""Evaluation of a head's predictions: metrics (scikit-learn), likely label errors, plots (matplotlib).

Pure numpy / scikit-learn / matplotlib (no Django). Everything :func:`evaluate` returns is plain
JSON (dicts, lists, str, int, float, None - never NaN), ready for a JSONField.

Definitions
    single-label  prediction = argmax of the probabilities. ``accuracy`` = fraction correct.
                  ``confusion_matrix.matrix[i][j]`` = samples of true class i predicted as j.
    multi-label   label l is predicted present when ``probs[:, l] >= thresholds[l]`` (0.5 when no
                  thresholds are given). ``accuracy`` is the *subset* accuracy (exact match of the
                  whole label set, scikit-learn's ``accuracy_score`` on indicator matrices), the
                  strict reading; ``sample_jaccard`` (the forgiving, sample-wise Jaccard score) is
                  reported next to it. ``confusion_matrix.matrix[i][j]`` = samples that truly
                  carry label i and were predicted to carry label j (diagonal = true positives,
                  row i off-diagonal = what else is predicted on images of label i), and
                  ``label_confusion[name]`` is that label's 2x2 ``[[tn, fp], [fn, tp]]``.
    both          ``macro_f1`` = unweighted mean F1 over the labels that occur in ``y_true``
                  (labels without a true example have undefined recall and are left out of the
                  mean; they still appear in ``per_label`` with support 0). ``pr_curves`` are
                  one-vs-rest precision/recall curves of each label's probability, at most
                  ``MAX_CURVE_POINTS`` points each, with average precision (None without positives).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "MAX_CURVE_POINTS",
    "confusion_matrix_png",
    "evaluate",
    "likely_label_errors",
    "likely_multilabel_errors",
    "pr_curves_png",
]

MAX_CURVE_POINTS = 100


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _f(x) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _downsample(precision: np.ndarray, recall: np.ndarray, k: int = MAX_CURVE_POINTS):
    n = len(precision)
    if n <= k:
        return precision, recall
    idx = np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))  # keeps both ends
    return precision[idx], recall[idx]


def _check(y_true, probs, label_names, multi_label):
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"probs must be (N, C), got {P.shape}")
    n, c = P.shape
    if len(label_names) != c:
        raise ValueError(f"{len(label_names)} label names for {c} probability columns")
    Y = np.asarray(y_true)
    if multi_label:
        if Y.shape != (n, c):
            raise ValueError(f"multi-label y_true must be (N, C) = {(n, c)}, got {Y.shape}")
        Y = (Y > 0).astype(np.int64)
    else:
        if Y.shape != (n,):
            raise ValueError(f"single-label y_true must be (N,) = {(n,)}, got {Y.shape}")
        Y = Y.astype(np.int64)
        if n and (Y.min() < 0 or Y.max() >= c):
            raise ValueError("y_true holds a class index outside [0, C)")
    return Y, P


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    label_names: Sequence[str],
    multi_label: bool,
    thresholds: np.ndarray | Sequence[float] | None = None,
) -> dict:
    """Metrics of ``probs`` (N, C) against ``y_true`` ((N,) class indices or an (N, C) 0/1 matrix).

    Returns ``{"accuracy", "macro_f1", "per_label": {name: {"precision", "recall", "f1",
    "support"}}, "confusion_matrix": {"labels": [...], "matrix": [[...]]}, "pr_curves": {name:
    {"precision": [...], "recall": [...], "average_precision"}}, "n_samples"}``; multi-label adds
    ``"sample_jaccard"``, ``"thresholds"`` and ``"label_confusion"``. See the module docstring.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        jaccard_score,
        multilabel_confusion_matrix,
        precision_recall_curve,
        precision_recall_fscore_support,
    )

    names = [str(s) for s in label_names]
    Y, P = _check(y_true, probs, names, multi_label)
    n, c = P.shape
    labels = list(range(c))

    if multi_label:
        t = np.full(c, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if t.shape != (c,):
            raise ValueError(f"thresholds must be (C,) = ({c},), got {t.shape}")
        pred = (P >= t[None, :]).astype(np.int64)
        truth_ind = Y
    else:
        pred_idx = P.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        pred = pred_idx
        truth_ind = np.eye(c, dtype=np.int64)[Y] if n else np.zeros((0, c), dtype=np.int64)

    if n == 0:
        prec = rec = f1 = np.zeros(c)
        support = np.zeros(c, dtype=np.int64)
        accuracy = None
    else:
        prec, rec, f1, support = precision_recall_fscore_support(
            Y, pred, labels=labels, average=None, zero_division=0.0
        )
        accuracy = _f(accuracy_score(Y, pred))
    present = np.asarray(support) > 0
    macro_f1 = _f(np.mean(f1[present])) if present.any() else None

    per_label = {
        name: {
            "precision": _f(prec[i]),
            "recall": _f(rec[i]),
            "f1": _f(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }

    out: dict = {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_label": per_label,
        "n_samples": int(n),
    }

    if multi_label:
        cm = (truth_ind.T @ pred).astype(np.int64) if n else np.zeros((c, c), dtype=np.int64)
        mcm = multilabel_confusion_matrix(Y, pred, labels=labels) if n else np.zeros((c, 2, 2), int)
        out["sample_jaccard"] = _f(jaccard_score(Y, pred, average="samples", zero_division=1.0)) if n else None
        out["thresholds"] = [float(v) for v in t]
        out["label_confusion"] = {name: mcm[i].astype(int).tolist() for i, name in enumerate(names)}
    else:
        cm = confusion_matrix(Y, pred, labels=labels) if n else np.zeros((c, c), dtype=np.int64)
    out["confusion_matrix"] = {"labels": names, "matrix": np.asarray(cm, dtype=np.int64).tolist()}

    curves = {}
    for i, name in enumerate(names):
        pos = int(truth_ind[:, i].sum()) if n else 0
        if pos == 0 or pos == n:
            # no positives: recall undefined; all positives: the curve is a single point
            curves[name] = {"precision": [], "recall": [], "average_precision": None if pos == 0 else 1.0}
            continue
        pr, rc, _ = precision_recall_curve(truth_ind[:, i], P[:, i])
        pr, rc = _downsample(pr, rc)
        curves[name] = {
            "precision": [round(float(v), 5) for v in pr],
            "recall": [round(float(v), 5) for v in rc],
            "average_precision": _f(average_precision_score(truth_ind[:, i], P[:, i])),
        }
    out["pr_curves"] = curves
    return out


# --------------------------------------------------------------------------------------------
# likely label errors
# --------------------------------------------------------------------------------------------


def likely_label_errors(
    y_true: np.ndarray, probs: np.ndarray, *, threshold: float = 0.8
) -> list[tuple[int, int, int, float]]:
    """Single-label samples whose model confidently disagrees with the human label.

    Returns ``(index, given, predicted, confidence)`` for every row where ``argmax(probs) != given``
    and the top probability is ``>= threshold``, most confident first. Use *out-of-fold*
    probabilities (``AutoMLResult.oof_probs``): a model scored on its own training rows has
    memorised their labels and hides the errors.
    """
    y = np.asarray(y_true).astype(np.int64)
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or y.shape != (P.shape[0],):
        raise ValueError(f"y_true {y.shape} and probs {P.shape} do not match")
    if P.shape[0] == 0:
        return []
    pred = P.argmax(axis=1)
    conf = P[np.arange(P.shape[0]), pred]
    rows = np.flatnonzero((pred != y) & (conf >= threshold))
    rows = rows[np.argsort(-conf[rows], kind="stable")]
    return [(int(i), int(y[i]), int(pred[i]), float(conf[i])) for i in rows]


def likely_multilabel_errors(
    Y: np.ndarray, probs: np.ndarray, *, threshold: float = 0.8
) -> list[tuple[int, int, int, int, float]]:
    """Multi-label version: ``(index, label, given, predicted, confidence)`` per suspicious cell.

    A cell is suspicious when the label is absent but ``p >= threshold`` (probably missing), or
    present but ``p <= 1 - threshold`` (probably wrong). ``confidence`` is the model's confidence in
    its own opinion (``p`` or ``1 - p``); most confident first.
    """
    Y = np.asarray(Y) > 0
    P = np.asarray(probs, dtype=np.float64)
    if P.shape != Y.shape or P.ndim != 2:
        raise ValueError(f"Y {Y.shape} and probs {P.shape} do not match")
    missing = ~Y & (P >= threshold)
    wrong = Y & (P <= 1.0 - threshold)
    rows, cols = np.nonzero(missing | wrong)
    conf = np.where(Y[rows, cols], 1.0 - P[rows, cols], P[rows, cols])
    order = np.argsort(-conf, kind="stable")
    return [
        (int(rows[k]), int(cols[k]), int(Y[rows[k], cols[k]]), int(not Y[rows[k], cols[k]]), float(conf[k]))
        for k in order
    ]


# --------------------------------------------------------------------------------------------
# plots (Agg canvas, no pyplot state: safe in web/worker processes without a display)
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]] | np.ndarray | Mapping,
    labels: Sequence[str] | None = None,
    *,
    title: str = "Confusion matrix",
    xlabel: str = "Predicted",
    ylabel: str = "True",
) -> bytes:
    """Heatmap of a confusion matrix as PNG bytes, counts written in the cells.

    Accepts ``evaluate(...)["confusion_matrix"]`` directly, or a matrix plus its labels. Colours
    are row-normalised (so small classes stay visible) while the annotations are raw counts;
    annotations are dropped above 30 classes, where they would be unreadable.
    """
    if isinstance(matrix, Mapping):
        labels = matrix["labels"] if labels is None else labels
        matrix = matrix["matrix"]
    M = np.asarray(matrix, dtype=np.int64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"confusion matrix must be square, got {M.shape}")
    c = M.shape[0]
    labels = [str(s) for s in (labels if labels is not None else range(c))]
    if len(labels) != c:
        raise ValueError(f"{len(labels)} labels for a {c}x{c} matrix")

    side = min(max(4.0, 0.55 * c + 2.5), 22.0)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot(1, 1, 1)
    rows = M.sum(axis=1, keepdims=True)
    norm = np.divide(M, rows, out=np.zeros(M.shape, dtype=np.float64), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("fraction of the true row")
    font = 10 if c <= 10 else (8 if c <= 20 else 6)
    short = [_short(s) for s in labels]
    ax.set_xticks(
        range(c),
        labels=short,
        rotation=45 if c > 3 else 0,
        ha="right" if c > 3 else "center",
        rotation_mode="anchor",
        fontsize=font,
    )
    ax.set_yticks(range(c), labels=short, fontsize=font)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j,
                    i,
                    str(M[i, j]),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    return _png(fig)


def pr_curves_png(
    pr_curves: Mapping[str, Mapping],
    *,
    title: str = "Precision-recall",
    max_legend: int = 20,
) -> bytes:
    """Precision-recall curves (``evaluate(...)["pr_curves"]``, or the whole result) as PNG bytes.

    One line per label with its average precision in the legend; labels without positives are
    skipped. Beyond ``max_legend`` labels the legend is left out.
    """
    if "pr_curves" in pr_curves and isinstance(pr_curves["pr_curves"], Mapping):
        pr_curves = pr_curves["pr_curves"]
    fig = _figure(7.0, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for name, curve in pr_curves.items():
        rc, pr = curve.get("recall") or [], curve.get("precision") or []
        if not rc:
            continue
        ap = curve.get("average_precision")
        label = f"{_short(str(name), 24)} (AP {ap:.2f})" if ap is not None else _short(str(name), 24)
        ax.step(rc, pr, where="post", label=label, linewidth=1.5)
        drawn += 1
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn == 0:
        ax.text(0.5, 0.5, "no label has positive examples", ha="center", va="center", transform=ax.transAxes)
    elif drawn <= max_legend:
        ax.legend(loc="lower left", fontsize=8)
    return _png(fig)
