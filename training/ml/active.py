"""Active learning on stored embeddings: which unlabeled images to label next.

Pure numpy (float32; no Django, no torch). Inputs are the L2-normalised backbone embeddings.

Strategy ``"active"`` has two phases (see shared/notes/active-learning.md for the measurements):

1. **Typicality** (TypiClust; Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022)
   while there is no model, fewer than ``min_labeled`` (30) labels, or some class still has fewer
   than ``min_per_class`` (3) labels (details and the reasons in :func:`phase`). All
   embeddings are clustered with k-means into ``n_labeled + batch_size`` clusters; the largest
   clusters that hold no labeled sample each give their most *typical* unlabeled point (typicality =
   inverse mean Euclidean distance to its ``knn`` (20) nearest neighbours inside the cluster). Dense,
   representative points, one per uncovered mode of the data. (Farthest-first / k-center greedy is
   deliberately not used: it picks outliers and loses to random order at small budgets.)
2. **Uncertainty + diversity** once a model exists and every class has a few labels: uncertainty is
   ``1 - (p_top1 - p_top2)`` (single-label margin) or, for multi-label, ``1 - min_l d_l`` where
   ``d_l`` is label l's distance from its threshold, scaled to [0, 1] (``(p - t) / (1 - t)`` above,
   ``(t - p) / t`` below). The ``candidate_factor * batch_size`` (5x) most uncertain unlabeled points
   are clustered into ``batch_size`` clusters and the most uncertain point of each cluster is taken,
   so a batch never spends several labels on near-identical images. Uncertainty is weighted by
   typicality (``density_weight``, 1): while the head is weak its most uncertain points are often
   outliers; bench/learning.py over four sets, 3 seeds, gained +0.4 to +2 points at 80 labels on
   Fashion-MNIST, dtd10 and digits over the unweighted margin (never lost more than 0.7 anywhere).

Scale: at most ``pool_cap`` (20,000) unlabeled rows take part in the typicality phase (a uniform
random subsample beyond that: the density of a 20k sample is the density of the pool), k-means is fit
on at most ``fit_cap`` of those and then assigns all of them, and each cluster's density uses at most
``density_cap`` (500) members. Distances are chunked matmuls; the many small products run on one
BLAS thread. Measured for 100,000 x 1280 (bench/active_learning.py): 0.4-0.8 CPU-seconds for the
typicality phase, < 0.1 for the uncertainty phase.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["kmeans", "phase", "rank", "typicality", "uncertainty"]

Strategy = Literal["active", "random", "oldest"]

_CHUNK = 8192


def _single_thread():
    """Limit BLAS to one thread: many small products are far faster that way, especially when the
    2 cores are shared with other processes (a 10k x 64 mat-vec took 8 ms with 2 contended threads,
    0.07 ms with one)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------------
# k-means (float32, k-means++ init in a random projection, chunked Lloyd iterations)
# --------------------------------------------------------------------------------------------


def _sq_dists(X: np.ndarray, C: np.ndarray, c_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances (len(X), len(C)) without the ||x||^2 term's cancellation woes."""
    if c_sq is None:
        c_sq = np.einsum("ij,ij->i", C, C)
    x_sq = np.einsum("ij,ij->i", X, X)
    d = x_sq[:, None] + c_sq[None, :] - 2.0 * (X @ C.T)
    np.maximum(d, 0.0, out=d)
    return d


def _assign(X: np.ndarray, C: np.ndarray, x_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and its squared distance for every row, in chunks."""
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", C, C)
    for s in range(0, n, _CHUNK):
        # ||x||^2 is constant per row: argmin only needs ||c||^2 - 2 x.c
        part = c_sq[None, :] - 2.0 * (X[s : s + _CHUNK] @ C.T)
        lab = part.argmin(axis=1)
        labels[s : s + _CHUNK] = lab
        best[s : s + _CHUNK] = part[np.arange(lab.size), lab]
    best += np.einsum("ij,ij->i", X, X) if x_sq is None else x_sq
    np.maximum(best, 0.0, out=best)
    return labels, best


def _kmeanspp(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding; returns row indices of X. Distances in a 64-d random projection (cheap)."""
    n, d = X.shape
    if d > 64:
        proj = rng.standard_normal((d, 64)).astype(np.float32) / np.float32(np.sqrt(64.0))
        Z = X @ proj
    else:
        Z = np.ascontiguousarray(X)
    z_sq = np.einsum("ij,ij->i", Z, Z)

    def dist_to(i: int) -> np.ndarray:
        d2 = z_sq + z_sq[i] - 2.0 * (Z @ Z[i])
        return np.maximum(d2, 0.0, out=d2)

    first = int(rng.integers(n))
    chosen = [first]
    closest = dist_to(first)
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point coincides with a chosen centre: take any unchosen row
            rest = np.setdiff1d(np.arange(n), chosen)
            if rest.size == 0:
                break
            nxt = int(rng.choice(rest))
        else:
            nxt = int(rng.choice(n, p=closest / total))
        chosen.append(nxt)
        np.minimum(closest, dist_to(nxt), out=closest)
    return np.asarray(chosen, dtype=np.int64)


def kmeans(
    X: np.ndarray,
    k: int,
    *,
    seed: int | np.random.Generator = 0,
    n_iter: int = 10,
    fit_cap: int = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on float32 rows. Returns ``(centroids (k', D), labels (N,))``, k' <= k.

    Fit on a random subsample of at most ``fit_cap`` rows (k-means++ seeding, ``n_iter`` Lloyd
    iterations, empty clusters reseeded at the worst-served point), then every row is assigned to its
    nearest centroid. k' < k only when X has fewer than k distinct rows.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    if n == 0 or k <= 0:
        return np.zeros((0, X.shape[1] if X.ndim == 2 else 0), np.float32), np.zeros(n, np.int64)
    k = min(k, n)
    fit_rows = np.sort(rng.choice(n, fit_cap, replace=False)) if n > fit_cap else np.arange(n)
    F = X[fit_rows]
    f_sq = np.einsum("ij,ij->i", F, F)
    with _single_thread():
        C = F[_kmeanspp(F, k, rng)].copy()
    k = C.shape[0]
    for _ in range(n_iter):
        labels, dist = _assign(F, C, f_sq)
        counts = np.bincount(labels, minlength=k)
        sums = _segment_sum(F, labels, k)
        nonempty = counts > 0
        C_new = C.copy()
        C_new[nonempty] = sums[nonempty] / counts[nonempty, None]
        empty = np.flatnonzero(~nonempty)
        if empty.size:
            far = np.argsort(-dist)[: empty.size]
            C_new[empty[: far.size]] = F[far]
        shift = float(np.abs(C_new - C).max())
        C = C_new
        if shift < 1e-6:
            break
    labels, _ = _assign(X, C)
    return C, labels


def _segment_sum(F: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster row sums (k, D) as a sparse one-hot matmul (far faster than np.add.at)."""
    from scipy import sparse

    n = F.shape[0]
    onehot = sparse.csr_matrix((np.ones(n, np.float32), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ F, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------


def typicality(points: np.ndarray, reference: np.ndarray, *, knn: int = 20, self_included: bool = True) -> np.ndarray:
    """Inverse mean distance of each point to its ``knn`` nearest neighbours in ``reference``.

    With ``self_included`` the points are themselves rows of ``reference`` and each point's own zero
    distance is skipped (exactly one neighbour is dropped; true duplicates still count).
    """
    m = reference.shape[0] - (1 if self_included else 0)
    out = np.empty(points.shape[0], dtype=np.float32)
    if m <= 0:  # a lone point has no neighbours: least typical
        out[:] = 0.0
        return out
    kk = max(1, min(knn, m))
    r_sq = np.einsum("ij,ij->i", reference, reference)
    for s in range(0, points.shape[0], 2048):
        d = np.sqrt(_sq_dists(points[s : s + 2048], reference, r_sq))
        take = kk + (1 if self_included else 0)
        if take >= d.shape[1]:
            part = np.sort(d, axis=1)[:, :take]
        else:
            part = np.sort(np.partition(d, take - 1, axis=1)[:, :take], axis=1)
        if self_included:
            part = part[:, 1:]
        out[s : s + 2048] = 1.0 / (part.mean(axis=1) + 1e-6)
    return out


def uncertainty(probs: np.ndarray, *, multi_label: bool, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Per-row uncertainty in [0, 1] (1 = a coin flip). See the module docstring."""
    P = np.asarray(probs, dtype=np.float32)
    if P.ndim != 2:
        raise ValueError(f"probs must be (N, C), got {P.shape}")
    if multi_label:
        t = np.full(P.shape[1], 0.5, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
        t = np.clip(t, 1e-6, 1 - 1e-6)
        d = np.where(P >= t, (P - t) / (1 - t), (t - P) / t)
        return (1.0 - d.min(axis=1)).astype(np.float32)
    if P.shape[1] == 1:
        return np.zeros(P.shape[0], np.float32)
    top2 = -np.partition(-P, 1, axis=1)[:, :2]
    return (1.0 - (top2[:, 0] - top2[:, 1])).astype(np.float32)


def phase(
    *,
    n_labeled: int,
    has_model: bool,
    n_classes: int | None,
    label_counts: np.ndarray | None = None,
    min_per_class: int = 3,
    min_labeled: int = 30,
) -> Literal["typicality", "uncertainty"]:
    """Which phase ``rank(strategy="active")`` uses.

    Uncertainty needs a model, at least ``min_labeled`` labels, and either ``label_counts``
    (labeled examples per class; multi-label: positives per label) all ``>= min_per_class``, or,
    without counts, ``n_labeled >= min_per_class * n_classes``. It also takes over once
    ``n_labeled >= 20 * n_classes`` even if a rare class still lags (typicality would keep hunting it
    at growing cost).

    Why the ``min_labeled`` floor: on hymenoptera (2 classes) switching to margin sampling at 3
    labels per class cost 2-5 points of accuracy between 8 and 30 labels compared with staying on
    typicality (a boundary fit on 6 points is mostly noise, so its "uncertain" points are noise
    too); on Fashion-MNIST (10 classes) the per-class rule only triggers after ~80 labels anyway.
    """
    if not has_model or n_labeled == 0 or n_labeled < min_labeled:
        return "typicality"
    c = n_classes or (len(label_counts) if label_counts is not None else 1)
    if label_counts is not None and len(label_counts):
        if int(np.min(label_counts)) >= min_per_class:
            return "uncertainty"
    elif n_labeled >= min_per_class * c:
        return "uncertainty"
    return "uncertainty" if n_labeled >= 20 * c else "typicality"


# --------------------------------------------------------------------------------------------
# rank
# --------------------------------------------------------------------------------------------


def _typiclust(
    X: np.ndarray,
    labeled: np.ndarray,
    batch: int,
    rng: np.random.Generator,
    *,
    knn: int,
    pool_cap: int,
    fit_cap: int,
    density_cap: int,
    max_clusters: int,
) -> tuple[np.ndarray, np.ndarray]:
    unl = np.flatnonzero(~labeled)
    lab = np.flatnonzero(labeled)
    if unl.size > pool_cap:
        unl = np.sort(rng.choice(unl, pool_cap, replace=False))
    if lab.size > pool_cap:
        lab = np.sort(rng.choice(lab, pool_cap, replace=False))
    rows = np.concatenate([lab, unl])
    is_lab = np.zeros(rows.size, bool)
    is_lab[: lab.size] = True
    P = X[rows]
    k = int(min(labeled.sum() + batch, max_clusters, rows.size))
    _, assign = kmeans(P, k, seed=rng, fit_cap=fit_cap, n_iter=6)
    k = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=k)
    covered = np.bincount(assign[is_lab], minlength=k)
    has_unl = np.bincount(assign[~is_lab], minlength=k) > 0
    # uncovered clusters first, then fewest labeled; larger first within each
    order = np.lexsort((-sizes, covered))
    order = order[has_unl[order]]

    picks: list[int] = []
    scores: list[float] = []
    taken = np.zeros(rows.size, bool)
    with _single_thread():
        # one point per cluster; if there are fewer usable clusters than the batch, go round again
        while len(picks) < batch:
            progressed = False
            for cl in order:
                if len(picks) >= batch:
                    break
                members = np.flatnonzero(assign == cl)
                cand = members[~is_lab[members] & ~taken[members]]
                if cand.size == 0:
                    continue
                # density inside the cluster, estimated on (at most) density_cap of its members;
                # the candidates are the unlabeled, not yet picked ones of that sample
                ref = (
                    members if members.size <= density_cap else np.sort(rng.choice(members, density_cap, replace=False))
                )
                ok = ~is_lab[ref] & ~taken[ref]
                if not ok.any():
                    ref = np.union1d(ref[: density_cap - 1], cand[:1])
                    ok = ~is_lab[ref] & ~taken[ref]
                typ = typicality(P[ref[ok]], P[ref], knn=knn, self_included=True)
                cand_s = ref[ok]
                best = int(cand_s[int(np.argmax(typ))])
                picks.append(int(rows[best]))
                scores.append(float(typ.max()))
                taken[best] = True
                progressed = True
            if not progressed:
                break
    idx = np.asarray(picks, dtype=np.int64)
    sc = np.asarray(scores, dtype=np.float32)
    if sc.size and sc.max() > 0:
        sc = sc / sc.max()
    return idx, sc


def _uncertain_diverse(
    X: np.ndarray,
    unl: np.ndarray,
    unc: np.ndarray,
    batch: int,
    rng: np.random.Generator,
    factor: int,
    weight: float = 0.0,
    knn: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    n_cand = min(unl.size, max(batch, factor * batch))
    if weight > 0:
        # weight uncertainty by typicality (density among the unlabeled): an uncertain outlier
        # teaches the head less than an uncertain point in a dense region
        ref = unl if unl.size <= 3000 else np.sort(rng.choice(unl, 3000, replace=False))
        with _single_thread():
            typ = typicality(X[unl], X[ref], knn=knn, self_included=False)
        typ = typ / max(float(typ.max()), 1e-12)
        want = unc * typ**weight
    else:
        want = unc
    top = np.argsort(-want, kind="stable")[:n_cand]
    # cu ranks (weighted), raw is what the batch reports as its score (the plain uncertainty)
    cand, cu, raw = unl[top], want[top], unc[top]
    if n_cand <= batch:
        return cand, raw
    _, assign = kmeans(X[cand], batch, seed=rng, n_iter=10)
    picks = []
    for cl in np.unique(assign):
        members = np.flatnonzero(assign == cl)
        picks.append(members[np.argmax(cu[members])])
    picks = list(picks)
    if len(picks) < batch:
        # fewer distinct clusters than the batch (near-duplicates): fill by uncertainty, skipping
        # exact copies of what is already picked
        chosen = X[cand[picks]]
        for j in range(n_cand):
            if len(picks) >= batch:
                break
            if j in picks:
                continue
            if (np.abs(chosen - X[cand[j]]).max(axis=1) < 1e-6).any():
                continue
            picks.append(j)
            chosen = np.vstack([chosen, X[cand[j]][None]])
    picks = np.asarray(picks, dtype=np.int64)
    picks = picks[np.argsort(-cu[picks], kind="stable")]
    return cand[picks], raw[picks]


def rank(
    *,
    embeddings: np.ndarray,
    labeled_mask: np.ndarray,
    probs: np.ndarray | None = None,
    multi_label: bool = False,
    thresholds: np.ndarray | None = None,
    batch_size: int = 10,
    strategy: Strategy = "active",
    seed: int = 0,
    label_counts: np.ndarray | None = None,
    min_per_class: int = 3,
    min_labeled: int = 30,
    knn: int = 20,
    candidate_factor: int = 5,
    density_weight: float = 1.0,
    pool_cap: int = 20_000,
    fit_cap: int = 10_000,
    density_cap: int = 500,
    max_clusters: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """The next ``batch_size`` unlabeled rows to label, in the order to show them.

    ``embeddings`` (N, D) float32, L2-normalised; ``labeled_mask`` (N,) bool; ``probs`` (N, C) the
    current quick model's probabilities for every row (labeled rows are ignored) or None when there
    is no model yet; ``thresholds`` (C,) multi-label decision thresholds (0.5 when None);
    ``label_counts`` (C,) labeled examples per class (multi-label: positives per label), used to
    decide when uncertainty sampling becomes trustworthy (see :func:`phase`).

    ``strategy``: ``"active"`` (the two phases above), ``"random"`` (uniform, reproducible with
    ``seed``) or ``"oldest"`` (lowest row index first: pass rows in upload order).

    Returns ``(order, scores)``: ``order`` int64 indices into ``embeddings`` of
    ``min(batch_size, n_unlabeled)`` distinct unlabeled rows (exactly the batch, not a longer
    ranking); ``scores`` float32 in [0, 1], higher = more wanted (uncertainty in the uncertainty
    phase, typicality relative to the batch's best in the typicality phase, 0 for random/oldest).
    Deterministic for a given ``seed``.
    """
    X = np.asarray(embeddings)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {X.shape}")
    labeled = np.asarray(labeled_mask, dtype=bool)
    if labeled.shape != (X.shape[0],):
        raise ValueError(f"labeled_mask must be ({X.shape[0]},), got {labeled.shape}")
    if batch_size < 0:
        raise ValueError("batch_size must be >= 0")
    unl = np.flatnonzero(~labeled)
    batch = int(min(batch_size, unl.size))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    if batch == 0:
        return empty
    rng = np.random.default_rng(seed)

    if strategy == "oldest":
        return unl[:batch].astype(np.int64), np.zeros(batch, np.float32)
    if strategy == "random":
        return rng.choice(unl, batch, replace=False).astype(np.int64), np.zeros(batch, np.float32)
    if strategy != "active":
        raise ValueError(f"unknown strategy {strategy!r}")

    if probs is not None:
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 2 or probs.shape[0] != X.shape[0]:
            raise ValueError(f"probs must be ({X.shape[0]}, C), got {probs.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    which = phase(
        n_labeled=int(labeled.sum()),
        has_model=probs is not None,
        n_classes=None if probs is None else probs.shape[1],
        label_counts=label_counts,
        min_per_class=min_per_class,
        min_labeled=min_labeled,
    )
    if which == "uncertainty":
        unc = uncertainty(probs[unl], multi_label=multi_label, thresholds=thresholds)
        return _uncertain_diverse(X, unl, unc, batch, rng, candidate_factor, weight=density_weight, knn=knn)
    return _typiclust(
        X,
        labeled,
        batch,
        rng,
        knn=knn,
        pool_cap=pool_cap,
        fit_cap=fit_cap,
        density_cap=density_cap,
        max_clusters=max_clusters,
    )


def queue_rank(
    *,
    features: dict[str, np.ndarray],
    labeled_mask: np.ndarray,
    probs: np.ndarray | None,
    multi_label: bool,
    thresholds: np.ndarray | None,
    batch_size: int,
    label_counts: np.ndarray | None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """What the labeling queue serves next (``training.queue_order.queue_refresh`` and bench/learning.py
    both call this): ``rank(strategy="active")`` on the ranking embedding of ``features``."""
    X = ranking_embedding(features)
    return rank(
        embeddings=X,
        labeled_mask=labeled_mask,
        probs=probs,
        multi_label=multi_label,
        thresholds=thresholds,
        batch_size=batch_size,
        strategy="active",
        label_counts=label_counts,
        seed=seed,
    )


def ranking_embedding(features: dict[str, np.ndarray]) -> np.ndarray:
    """The geometry typicality and diversity are measured in: lite0 (the first backbone) if present."""
    for key in ("lite0", "lite2"):
        if key in features:
            return features[key]
    return next(iter(features.values()))
