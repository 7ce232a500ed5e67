"""Evaluation (training/ml/metrics.py): numbers worked out by hand, JSON shape, plots."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from training.ml import metrics

# Six samples, three classes. argmax predictions: 0 0 1 1 2 2 against truth 0 0 0 1 1 2.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.80, 0.10, 0.10],
        [0.60, 0.30, 0.10],
        [0.30, 0.60, 0.10],
        [0.20, 0.70, 0.10],
        [0.05, 0.30, 0.65],
        [0.10, 0.10, 0.80],
    ]
)
NAMES = ["ant", "bee", "wasp"]


def test_single_label_numbers_worked_out_by_hand():
    r = metrics.evaluate(Y_TRUE, PROBS, label_names=NAMES, multi_label=False)
    assert r["accuracy"] == pytest.approx(4 / 6)
    # ant: P 2/2 R 2/3 F1 0.8 | bee: P 1/2 R 1/2 F1 0.5 | wasp: P 1/2 R 1/1 F1 2/3
    assert r["per_label"]["ant"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert r["per_label"]["bee"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_label"]["wasp"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # rows = true, columns = predicted
    assert r["confusion_matrix"] == {"labels": NAMES, "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}
    # AP, bee: ranking 0.7(+) 0.6(-) 0.3(-, +) -> 0.5 * 1 + 0.5 * (2/4) = 0.75; ant and wasp rank perfectly
    assert r["pr_curves"]["bee"]["average_precision"] == pytest.approx(0.75)
    assert r["pr_curves"]["ant"]["average_precision"] == pytest.approx(1.0)
    assert r["pr_curves"]["wasp"]["average_precision"] == pytest.approx(1.0)
    bee = r["pr_curves"]["bee"]
    assert len(bee["precision"]) == len(bee["recall"]) >= 3
    assert bee["recall"][0] == 1.0 and bee["precision"][0] == pytest.approx(
        2 / 6, abs=1e-5
    )  # curves are rounded to 5 places
    assert r["n_samples"] == 6
    json.dumps(r, allow_nan=False)


def test_multi_label_numbers_worked_out_by_hand():
    Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    P = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.8], [0.1, 0.3]])
    r = metrics.evaluate(Y, P, label_names=["a", "b"], multi_label=True)
    # predictions at 0.5: [1,0] [0,1] [1,1] [0,0] -> rows 0 and 3 match exactly
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["sample_jaccard"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    assert r["per_label"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_label"]["b"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2})
    assert r["macro_f1"] == pytest.approx(0.75)
    # matrix[i][j]: samples truly labeled i that were predicted j
    assert r["confusion_matrix"] == {"labels": ["a", "b"], "matrix": [[1, 1], [1, 2]]}
    assert r["label_confusion"] == {"a": [[1, 1], [1, 1]], "b": [[2, 0], [0, 2]]}
    assert r["thresholds"] == [0.5, 0.5]
    # a stricter threshold for "a" removes the false positive on row 2
    r2 = metrics.evaluate(Y, P, label_names=["a", "b"], multi_label=True, thresholds=[0.65, 0.5])
    assert r2["accuracy"] == pytest.approx(0.75)
    assert r2["per_label"]["a"]["precision"] == pytest.approx(1.0)
    json.dumps(r2, allow_nan=False)


def test_labels_without_examples_stay_json_safe():
    y = np.array([0, 0, 1, 1])
    P = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    r = metrics.evaluate(y, P, label_names=["x", "y", "z"], multi_label=False)
    assert r["per_label"]["z"]["support"] == 0
    assert r["pr_curves"]["z"] == {"precision": [], "recall": [], "average_precision": None}
    # macro F1 over the labels present in y_true: x F1 = 0.8, y F1 = 2/3
    assert r["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    json.dumps(r, allow_nan=False)


def test_pr_curves_are_downsampled():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    P = np.clip(rng.random(2000) * 0.6 + 0.4 * y, 0, 1)
    r = metrics.evaluate(y, np.stack([1 - P, P], 1), label_names=["n", "p"], multi_label=False)
    curve = r["pr_curves"]["p"]
    assert 50 <= len(curve["recall"]) <= metrics.MAX_CURVE_POINTS
    assert curve["recall"][0] == 1.0 and curve["recall"][-1] == 0.0
    assert all(a >= b for a, b in zip(curve["recall"], curve["recall"][1:]))


def test_likely_label_errors():
    errs = metrics.likely_label_errors(Y_TRUE, PROBS, threshold=0.55)
    assert errs == [(4, 1, 2, pytest.approx(0.65)), (2, 0, 1, pytest.approx(0.6))]
    assert metrics.likely_label_errors(Y_TRUE, PROBS, threshold=0.8) == []
    Y = np.array([[1, 0], [0, 0]])
    P = np.array([[0.05, 0.1], [0.3, 0.95]])
    assert metrics.likely_multilabel_errors(Y, P, threshold=0.9) == [
        (0, 0, 1, 0, pytest.approx(0.95)),
        (1, 1, 0, 1, pytest.approx(0.95)),
    ]


def _decode(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def test_plots_decode():
    r = metrics.evaluate(Y_TRUE, PROBS, label_names=NAMES, multi_label=False)
    cm = _decode(metrics.confusion_matrix_png(r["confusion_matrix"]))
    assert cm.width > 200 and cm.height > 200
    pr = _decode(metrics.pr_curves_png(r["pr_curves"]))
    assert pr.width > 200
    _decode(metrics.pr_curves_png(r))  # the whole result works too
    big = np.random.default_rng(0).integers(0, 9, (40, 40))
    big_png = _decode(metrics.confusion_matrix_png(big, [f"class number {i}" for i in range(40)]))
    assert big_png.width > cm.width
    with pytest.raises(ValueError):
        metrics.confusion_matrix_png([[1, 2, 3]], ["a"])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        metrics.evaluate(Y_TRUE, PROBS, label_names=["a", "b"], multi_label=False)
    with pytest.raises(ValueError):
        metrics.evaluate(Y_TRUE[:3], PROBS, label_names=NAMES, multi_label=False)
