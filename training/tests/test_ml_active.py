"""Active learning (training/ml/active.py) on toy embeddings."""

import numpy as np
import pytest

from training.ml import active


def _unit(a):
    a = np.asarray(a, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _two_blobs(n=(150, 150), d=32, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    c = np.zeros((2, d), np.float32)
    c[0, 0] = c[1, 1] = 1.0
    X = np.concatenate([c[i] + spread * rng.standard_normal((n[i], d)) for i in range(2)])
    return _unit(X), np.repeat([0, 1], n)


def _rank(X, labeled=None, **kw):
    if labeled is None:
        labeled = np.zeros(len(X), bool)
    kw.setdefault("batch_size", 1)
    kw.setdefault("min_labeled", 0)  # toy sets are small: let the per-class rule alone decide the phase
    return active.rank(embeddings=X, labeled_mask=labeled, **kw)


def test_cold_start_batch_of_two_hits_both_blobs():
    X, blob = _two_blobs(n=(220, 80))  # unbalanced: a density-only pick would take both from blob 0
    for seed in range(3):
        order, scores = _rank(X, batch_size=2, seed=seed)
        assert sorted(blob[order].tolist()) == [0, 1]
        assert scores.shape == (2,) and scores.dtype == np.float32 and scores.max() == pytest.approx(1.0)


def test_typicality_prefers_the_uncovered_blob():
    X, blob = _two_blobs()
    labeled = np.zeros(len(X), bool)
    labeled[3] = True  # a labeled sample in blob 0
    order, _ = _rank(X, labeled, batch_size=1)
    assert blob[order[0]] == 1


def test_typicality_picks_dense_centres_not_outliers():
    rng = np.random.default_rng(1)
    d = 16
    blob = rng.standard_normal((300, d)) * 0.1 + np.eye(d)[0]
    outliers = np.eye(d)[0] + rng.choice([-1.0, 1.0], (6, d)) * 0.9  # far from the blob, scattered
    X = _unit(np.concatenate([blob, outliers]))
    order, _ = _rank(X, batch_size=1)
    assert order[0] < 300
    centre = X[:300].mean(0)
    dist = np.linalg.norm(X[:300] - centre, axis=1)
    # the chosen point is among the 10% most central points of the blob
    assert dist[order[0]] <= np.quantile(dist, 0.10)
    t = active.typicality(X, X, knn=10)
    assert t[300:].max() < t[:300].min()


def test_margin_prefers_the_decision_boundary():
    rng = np.random.default_rng(2)
    x = np.linspace(-3, 3, 301)
    X = _unit(np.c_[x, np.ones_like(x), 0.01 * rng.standard_normal((301, 6))])
    p1 = 1 / (1 + np.exp(-4 * x))
    probs = np.c_[1 - p1, p1].astype(np.float32)
    labeled = np.zeros(301, bool)
    labeled[[0, 1, 2, 298, 299, 300]] = True
    counts = np.array([3, 3])
    order, scores = _rank(X, labeled, probs=probs, label_counts=counts, batch_size=1)
    assert abs(x[order[0]]) < 0.011  # the point at x = 0
    assert scores[0] == pytest.approx(1.0, abs=1e-3)
    order, scores = _rank(X, labeled, probs=probs, label_counts=counts, batch_size=4, density_weight=0.0)
    # unweighted: every pick is among the 5 x 4 most uncertain, and the batch is sorted by uncertainty
    assert np.abs(x[order]).max() <= 0.11
    assert (np.diff(scores) <= 0).all()
    assert not labeled[order].any()


def test_uncertain_duplicates_are_not_picked_twice():
    rng = np.random.default_rng(3)
    X = _unit(rng.standard_normal((200, 16)))
    X[:6] = X[0]  # six copies of one image, all maximally uncertain
    probs = np.tile(np.float32([0.9, 0.1]), (200, 1))
    probs[:6] = [0.5, 0.5]
    probs[6:20] = [0.6, 0.4]
    labeled = np.zeros(200, bool)
    labeled[180:] = True
    order, _ = _rank(X, labeled, probs=probs, label_counts=np.array([10, 10]), batch_size=4)
    assert len(order) == 4 == len(set(order.tolist()))
    assert np.isin(order, np.arange(6)).sum() == 1
    assert np.isin(order, np.arange(6, 20)).sum() == 3


def test_cold_start_with_duplicates_picks_each_image_once():
    X, _ = _two_blobs(n=(40, 40))
    X = np.concatenate([X, np.repeat(X[:1], 30, axis=0)])  # a burst of identical uploads
    order, _ = _rank(X, batch_size=10, seed=4)
    assert len(set(map(tuple, np.round(X[order], 6).tolist()))) == 10


def test_multi_label_uncertainty_is_closeness_to_threshold():
    P = np.array([[0.7, 0.05], [0.9, 0.95], [0.2, 0.5]], np.float32)
    t = np.array([0.6, 0.5], np.float32)
    u = active.uncertainty(P, multi_label=True, thresholds=t)
    # row 0: label 0 is (0.7-0.6)/0.4 = 0.25 from its threshold -> 0.75; row 2: label 1 sits on it -> 1
    np.testing.assert_allclose(u, [0.75, 1 - 0.75, 1.0], atol=1e-6)
    single = active.uncertainty(np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]), multi_label=False)
    np.testing.assert_allclose(single, [0.8, 0.15], atol=1e-6)
    labeled = np.array([False, False, False, True])
    P4 = np.r_[P, [[0.6, 0.5]]]  # the labeled row would be the most uncertain: must be ignored
    order, _ = _rank(
        _unit(np.eye(4)), labeled, probs=P4, multi_label=True, thresholds=t, label_counts=np.array([5, 5]), batch_size=1
    )
    assert order.tolist() == [2]


def test_phase_switches_when_every_class_has_a_few_labels():
    phase = active.phase
    assert phase(n_labeled=0, has_model=False, n_classes=None) == "typicality"
    assert phase(n_labeled=50, has_model=False, n_classes=3) == "typicality"
    assert phase(n_labeled=50, has_model=True, n_classes=3, label_counts=np.array([40, 8, 2])) == "typicality"
    assert phase(n_labeled=50, has_model=True, n_classes=3, label_counts=np.array([40, 7, 3])) == "uncertainty"
    # below the absolute floor the boundary is too noisy to be worth sampling along
    assert phase(n_labeled=29, has_model=True, n_classes=2, label_counts=np.array([15, 14])) == "typicality"
    assert phase(n_labeled=30, has_model=True, n_classes=2, label_counts=np.array([15, 15])) == "uncertainty"
    # without per-class counts: min_per_class * n_classes labels
    assert phase(n_labeled=8, has_model=True, n_classes=3, min_labeled=0) == "typicality"
    assert phase(n_labeled=9, has_model=True, n_classes=3, min_labeled=0) == "uncertainty"
    # a class that stays rare does not keep the learner in the cold-start phase forever
    assert phase(n_labeled=60, has_model=True, n_classes=3, label_counts=np.array([58, 1, 1])) == "uncertainty"


def test_random_and_oldest_are_deterministic_and_skip_labeled():
    X, _ = _two_blobs()
    labeled = np.zeros(len(X), bool)
    labeled[[0, 2, 5]] = True
    a, sa = _rank(X, labeled, strategy="random", seed=7, batch_size=10)
    b, _ = _rank(X, labeled, strategy="random", seed=7, batch_size=10)
    c, _ = _rank(X, labeled, strategy="random", seed=8, batch_size=10)
    np.testing.assert_array_equal(a, b)
    assert a.tolist() != c.tolist()
    assert not labeled[a].any() and len(set(a.tolist())) == 10 and (sa == 0).all()
    o, _ = _rank(X, labeled, strategy="oldest", batch_size=4)
    assert o.tolist() == [1, 3, 4, 6]
    x1, _ = _rank(X, labeled, batch_size=5, seed=3)
    x2, _ = _rank(X, labeled, batch_size=5, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert not labeled[x1].any()


def test_batch_larger_than_the_pool_and_empty_pool():
    X, _ = _two_blobs(n=(5, 5))
    labeled = np.zeros(10, bool)
    labeled[:7] = True
    for strategy in ("active", "random", "oldest"):
        order, scores = _rank(X, labeled, strategy=strategy, batch_size=50)
        assert sorted(order.tolist()) == [7, 8, 9] and scores.shape == (3,)
    order, scores = _rank(X, np.ones(10, bool), batch_size=5)
    assert order.shape == (0,) and scores.shape == (0,)
    with pytest.raises(ValueError):
        _rank(X, labeled, strategy="farthest")
    with pytest.raises(ValueError):
        _rank(X, labeled[:5])


def test_kmeans_recovers_blobs():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 8)) * 5
    X = np.concatenate([c + rng.standard_normal((50, 8)) for c in centres]).astype(np.float32)
    truth = np.repeat(np.arange(4), 50)
    C, labels = active.kmeans(X, 4, seed=0)
    assert C.shape == (4, 8)
    # each found cluster is exactly one true blob
    for k in range(4):
        assert len(set(truth[labels == k].tolist())) == 1
    assert len(set(labels.tolist())) == 4


def test_uncertainty_is_weighted_by_typicality_so_an_uncertain_outlier_waits():
    rng = np.random.default_rng(0)
    dense = 0.02 * rng.standard_normal((200, 8)) + np.r_[1.0, np.zeros(7)]
    outlier = np.r_[0.0, 1.0, np.zeros(6)][None]
    X = _unit(np.vstack([dense, outlier]).astype(np.float32))
    probs = np.tile(np.float32([[0.9, 0.1]]), (201, 1))
    probs[:100] = [0.6, 0.4]  # fairly uncertain, in the dense region
    probs[200] = [0.5, 0.5]  # the most uncertain, alone
    labeled = np.zeros(201, bool)
    labeled[150:156] = True
    counts = np.array([3, 3])
    order, _ = _rank(X, labeled, probs=probs, label_counts=counts, batch_size=1)
    assert order[0] < 100
    order, _ = _rank(X, labeled, probs=probs, label_counts=counts, batch_size=1, density_weight=0.0)
    assert order[0] == 200
