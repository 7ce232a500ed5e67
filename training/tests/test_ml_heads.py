"""The quick model (training/ml/heads.py): fits, serialisation, CV, AutoML, thresholds."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from training.ml import heads


def _blobs(n_per: int, centers: np.ndarray, scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + scale * rng.standard_normal((n_per, centers.shape[1])) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    return X.astype(np.float32), y


def _standardise(X):
    # heads standardises with a per-feature sd shrunk halfway towards the average feature variance
    var = X.var(0)
    return (X - X.mean(0)) / np.sqrt(0.5 * var + 0.5 * var.mean())


def test_single_label_matches_sklearn_logistic_regression():
    # same objective: mean class-balanced CE + 0.5 * l2 * ||W||^2 on standardised X  <=>  sklearn
    # C = 1 / (l2 * N), class_weight="balanced" (features of unequal scale, so the shrunk
    # standardisation matters; classes of unequal size, so the weights do)
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((300, 6)) * [1.0, 3.0, 0.2, 1.0, 0.5, 2.0]).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.standard_normal(300) > 0).astype(int) + (X[:, 2] > 0.16)
    l2 = 0.05
    head = heads.fit_head(X, y, multi_label=False, l2=l2, max_iter=200)
    ref = LogisticRegression(C=1.0 / (l2 * len(y)), class_weight="balanced", max_iter=5000, tol=1e-10)
    ref.fit(_standardise(X), y)
    assert len(set(np.bincount(y))) == 3  # unequal classes
    ours = head.predict_proba(X)
    assert ours.shape == (300, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, ref.predict_proba(_standardise(X)), atol=5e-3)


def test_multi_label_matches_independent_sklearn_heads():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((250, 5)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0.5, rng.random(250) < 0.2], axis=1).astype(int)
    l2 = 0.1
    head = heads.fit_head(X, Y, multi_label=True, l2=l2, max_iter=200)
    P = head.predict_proba(X)
    assert P.shape == (250, 3)
    assert not np.allclose(P.sum(1), 1.0)  # independent sigmoids, not a softmax
    for j in range(3):
        ref = LogisticRegression(C=1.0 / (l2 * 250), max_iter=5000, tol=1e-10).fit(_standardise(X), Y[:, j])
        np.testing.assert_allclose(P[:, j], ref.predict_proba(_standardise(X))[:, 1], atol=5e-3)


def test_head_fits_embeddings_and_round_trips_through_bytes():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 64))
    X, y = _blobs(30, centers, 0.8)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    head = heads.fit_head(X, y, multi_label=False, l2=0.01)
    assert head.W.shape == (64, 4) and head.b.shape == (4,)
    assert head.W.dtype == np.float32 and head.b.dtype == np.float32
    assert (head.predict_proba(X).argmax(1) == y).mean() == 1.0

    data = head.to_bytes()
    assert isinstance(data, bytes)
    back = heads.LinearHead.from_bytes(data)
    assert back.multi_label is False
    np.testing.assert_array_equal(back.W, head.W)
    np.testing.assert_array_equal(back.b, head.b)
    np.testing.assert_array_equal(back.predict_proba(X), head.predict_proba(X))
    assert back.meta["l2"] == pytest.approx(0.01)
    with pytest.raises(ValueError):
        head.predict_proba(X[:, :10])


def test_n_classes_adds_unseen_classes_with_low_probability():
    X, y = _blobs(20, np.array([[0.0, 0.0], [4.0, 4.0]]), 0.5)
    head = heads.fit_head(X, y, multi_label=False, l2=0.01, n_classes=3)
    P = head.predict_proba(X)
    assert P.shape == (40, 3)
    assert P[:, 2].max() < 0.05


def test_fold_ids_are_stratified_and_spread_tiny_classes():
    y = np.array([0] * 50 + [1] * 25 + [2] * 2 + [3] * 1 + [4] * 1 + [5] * 1)
    f = heads.fold_ids(y, 5, multi_label=False, seed=1)
    assert f.shape == y.shape and set(np.unique(f)) == set(range(5))
    for c, n in ((0, 50), (1, 25)):
        assert np.bincount(f[y == c], minlength=5).tolist() == [n // 5] * 5
    assert len(set(f[y == 2])) == 2  # the two examples of class 2 are held out in different folds
    sizes = np.bincount(f, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    # multi-label: rows are grouped by their rarest positive label
    Y = np.zeros((40, 3), int)
    Y[:30, 0] = 1
    Y[30:, 1] = 1
    Y[::10, 2] = 1  # rare label on 4 rows
    fm = heads.fold_ids(Y, 4, multi_label=True, seed=0)
    assert sorted(fm[Y[:, 2] == 1].tolist()) == [0, 1, 2, 3]


def test_cross_validation_is_out_of_fold():
    # Random labels in 200 dimensions with 60 samples: memorised in-sample, chance out of fold.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 200)).astype(np.float32)
    y = rng.integers(0, 2, 60)
    head = heads.fit_head(X, y, multi_label=False, l2=1e-3)
    assert (head.predict_proba(X).argmax(1) == y).mean() == 1.0
    oof = heads.cross_validate(X, y, multi_label=False, l2=1e-3, k=5)
    assert oof.shape == (60, 2)
    np.testing.assert_allclose(oof.sum(1), 1.0, atol=1e-5)
    assert (oof.argmax(1) == y).mean() < 0.75


def test_cross_validation_handles_tiny_classes():
    rng = np.random.default_rng(6)
    centers = rng.standard_normal((3, 16)) * 3
    X, y = _blobs(10, centers, 0.5)
    X = np.concatenate([X, centers[None, 0] * -1 + 0.1]).astype(np.float32)
    y = np.concatenate([y, [3]])  # class 3 has a single example
    oof = heads.cross_validate(X, y, multi_label=False, l2=0.1, k=5)
    assert oof.shape == (31, 4) and np.isfinite(oof).all()
    # the singleton is never in its own training fold: its own class cannot be predicted
    assert oof[-1, 3] < 0.5
    assert (oof[:30].argmax(1) == y[:30]).mean() == 1.0
    # one sample: nothing to hold out -> the smoothed prior, not an error
    one = heads.cross_validate(X[:1], y[:1], multi_label=False, l2=0.1, n_classes=4)
    np.testing.assert_allclose(one, [[1.5 / 3, 0.5 / 3, 0.5 / 3, 0.5 / 3]], rtol=1e-5)


def test_choose_thresholds_hand_computed():
    P = np.array([[0.9, 0.9, 0.3], [0.8, 0.8, 0.2], [0.3, 0.7, 0.1], [0.2, 0.1, 0.05]])
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    t = heads.choose_thresholds(P, Y)
    assert t.shape == (3,) and t.dtype == np.float32
    # label 0: perfect split between 0.8 and 0.3 -> midpoint 0.55
    # label 1: F1 at cuts 0.9/0.8/0.7/0.1 = 0.667/0.5/0.8/0.667 -> keep 0.7, midpoint with 0.1 = 0.4
    # label 2: no positives -> default 0.5
    np.testing.assert_allclose(t, [0.55, 0.4, 0.5], atol=1e-6)


def test_automl_picks_informative_features_and_regularisation():
    rng = np.random.default_rng(7)
    n = 120
    y = np.repeat(np.arange(3), n // 3)
    good = rng.standard_normal((n, 8)) * 0.6
    good[np.arange(n), y] += 2.0
    noise = rng.standard_normal((n, 100))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    res = heads.automl_fit({"lite0": unit(noise), "lite2": unit(good)}, y, multi_label=False, k=5)
    keys = {row["feature_key"] for row in res.cv_table}
    assert keys == {"lite0", "lite2", "lite0+lite2"}
    assert len(res.cv_table) == 3 * len(heads.DEFAULT_L2_GRID)
    assert res.feature_key == "lite2"
    rows = [r for r in res.cv_table if r["feature_key"] == "lite2"]
    assert res.l2 == min(rows, key=lambda r: r["log_loss"])["l2"]
    noise_rows = [r for r in res.cv_table if r["feature_key"] == "lite0"]
    assert max(r["accuracy"] for r in noise_rows) < 0.6 < min(r["accuracy"] for r in rows)
    assert res.oof_probs.shape == (n, 3) and res.k == 5 and res.thresholds is None
    assert res.head.n_features == 8 and res.head.meta["feature_key"] == "lite2"
    assert (res.head.predict_proba(unit(good)).argmax(1) == y).mean() > 0.9


def test_automl_multi_label_returns_thresholds_and_concatenation_helper():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((90, 10)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 1.0], axis=1).astype(int)
    res = heads.automl_fit({"lite0": X}, Y, multi_label=True, l2_grid=(0.1, 0.01))
    assert res.feature_key == "lite0"
    assert res.oof_probs.shape == (90, 2)
    assert res.thresholds.shape == (2,) and ((res.thresholds > 0) & (res.thresholds < 1)).all()
    assert res.head.multi_label and res.head.meta["thresholds"] == pytest.approx(res.thresholds.tolist())
    pred = res.head.predict_proba(X) >= res.thresholds
    assert (pred == (Y > 0)).mean() > 0.9
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    cat = heads.concat_features([a, b])
    assert cat.shape == (2, 5)
    np.testing.assert_allclose(cat[0], np.r_[np.ones(3), np.zeros(2)] / np.sqrt(2), rtol=1e-6)


def test_bad_inputs_are_rejected():
    X = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError):
        heads.fit_head(X, np.array([0, 1, 2]), multi_label=False, l2=0.1)
    with pytest.raises(ValueError):
        heads.fit_head(X, np.array([[0, 2]] * 4), multi_label=True, l2=0.1)
    with pytest.raises(ValueError):
        heads.automl_fit({"lite0": X, "lite2": np.zeros((5, 3), np.float32)}, np.zeros(4, int), multi_label=False)


def test_automl_tunes_on_a_subsample_when_large():
    rng = np.random.default_rng(9)
    centers = rng.standard_normal((3, 12)) * 2
    X, y = _blobs(100, centers, 1.0, seed=9)
    res = heads.automl_fit({"lite0": X}, y, multi_label=False, l2_grid=(1.0, 0.1), tune_rows=100)
    # l2 chosen on a ~1/3 subsample, rescaled by its share of the rows
    assert all(r["n_eval"] < 150 for r in res.cv_table)
    assert any(res.l2 == pytest.approx(r["l2"]) for r in res.cv_table)
    assert res.l2 < 1.0 * 0.5
    # out-of-fold probabilities still cover every row
    assert res.oof_probs.shape == (300, 3)
    assert (res.oof_probs.argmax(1) == y).mean() > 0.8
    assert res.head.meta["n_train"] == 300


# ---------------------------------------------------------------- tiny budgets, classic features


def test_two_examples_of_two_labels_fit_with_leave_one_out_and_fewer_with_no_cv():
    X, y = _blobs(2, np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0]]), 0.3)
    res = heads.automl_fit({"lite0": X}, y, multi_label=False, n_classes=2)
    assert res.evaluation == "leave_one_out" and res.k == 4
    assert res.oof_probs.shape == (4, 2) and np.isfinite(res.oof_probs).all()
    assert (res.head.predict_proba(X).argmax(1) == y).all()
    one_each = heads.automl_fit({"lite0": X[[0, 2]]}, y[[0, 2]], multi_label=False, n_classes=2)
    assert one_each.evaluation == "none" and (one_each.head.predict_proba(X[[0, 2]]).argmax(1) == [0, 1]).all()


def _digits_features():
    """sklearn's digits as the product sees them: 8-bit PNG uploads -> the pixels feature, next to
    an "ImageNet" feature that carries the class only weakly (as ImageNet features of 8x8 digits do)."""
    import io

    from PIL import Image
    from sklearn.datasets import load_digits

    from training.ml.pixels import pixel_features

    d = load_digits()
    pngs = []
    for img in (d.images * (255 / 16)).round().astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    pix = pixel_features(pngs)
    rng = np.random.default_rng(0)
    weak = np.eye(10, 64)[d.target] * 0.6 + rng.standard_normal((len(pngs), 64))
    weak = (weak / np.linalg.norm(weak, axis=1, keepdims=True)).astype(np.float32)
    return {"lite0": weak, "pixels": pix}, d.target


def test_the_classic_pixel_feature_wins_on_digits_with_five_labels_per_class():
    feats, y = _digits_features()
    rng = np.random.default_rng(1)
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False) for c in range(10)])
    test = np.setdiff1d(np.arange(y.size), train)
    res = heads.automl_fit(
        {k: v[train] for k, v in feats.items()}, y[train], multi_label=False, n_classes=10, pool=feats
    )
    assert "pixels" in res.feature_key
    # the PCA is folded into the head: it acts on the raw (concatenated) features
    acc = (res.head.predict_proba(res.build({k: v[test] for k, v in feats.items()})).argmax(1) == y[test]).mean()
    only = heads.automl_fit({"lite0": feats["lite0"][train]}, y[train], multi_label=False, n_classes=10)
    acc_only = (only.head.predict_proba(feats["lite0"][test]).argmax(1) == y[test]).mean()
    assert acc > 0.75 and acc > acc_only + 0.2
    assert {row["feature_key"] for row in res.cv_table} >= {"lite0", "pixels", "lite0+pixels"}


def test_a_refit_of_a_pixel_recipe_is_the_head_automl_fit_made():
    """What the queue ranks with between retrains must be the quick model's recipe: the same whitened
    PCA of the classic feature (a refit on raw pixels at the PCA's l2 was another model)."""
    feats, y = _digits_features()
    rng = np.random.default_rng(2)
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False) for c in range(10)])
    rest = np.setdiff1d(np.arange(y.size), train)
    labeled = {k: v[train] for k, v in feats.items()}
    res = heads.automl_fit(labeled, y[train], multi_label=False, n_classes=10, pool=feats)
    assert "pixels" in res.feature_key
    head = heads.refit_recipe(
        labeled, y[train], feature_key=res.feature_key, l2=res.l2, multi_label=False, n_classes=10, pool=feats
    )
    X = res.build({k: v[rest] for k, v in feats.items()})
    theirs, ours = res.head.predict_proba(X), head.predict_proba(X)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.99 and np.abs(ours - theirs).max() < 0.02
    # without a pool (nothing stored yet) the labeled rows give the basis, and it still predicts
    alone = heads.refit_recipe(
        labeled, y[train], feature_key=res.feature_key, l2=res.l2, multi_label=False, n_classes=10
    )
    assert (alone.predict_proba(X).argmax(1) == y[rest]).mean() > 0.5


def test_the_cost_cap_skips_the_remaining_candidates():
    feats, y = _digits_features()
    rows = np.arange(200)
    res = heads.automl_fit(
        {k: v[rows] for k, v in feats.items()}, y[rows], multi_label=False, n_classes=10, max_seconds=0.0
    )
    assert res.feature_key == "lite0" and res.skipped == ["pixels", "lite0+pixels"]


def test_it_does_not_answer_the_majority_label_when_the_labels_are_skewed():
    # 9 examples of one class, 3 of the other, as an active learner's first picks can be: a
    # regularised head fit without class weights answers the majority class almost always
    # (minority recall about 0.2 here; about 0.6 balanced).
    recalls = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        d = 64
        u = rng.standard_normal(d).astype(np.float32)
        u /= np.linalg.norm(u)

        def draw(n, cls, rng=rng, u=u, d=d):
            return (rng.standard_normal((n, d)) + (2.0 if cls else -2.0) * u).astype(np.float32)

        X = np.concatenate([draw(9, 0), draw(3, 1)])
        y = np.array([0] * 9 + [1] * 3)
        head = heads.fit_head(X, y, multi_label=False, l2=1.0)
        pred = head.predict_proba(np.concatenate([draw(200, 0), draw(200, 1)])).argmax(axis=1)
        recalls.append(((pred[200:] == 1).mean(), (pred[:200] == 0).mean()))
    minority, majority = np.mean(recalls, axis=0)
    assert minority > 0.45, minority
    assert majority > 0.85, majority
