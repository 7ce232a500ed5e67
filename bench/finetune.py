"""Full-training recipe search against the quick model, through the ML core full_train uses.

    nice .venv/bin/python bench/finetune.py [hymenoptera dtd10 fashion] [--seconds S] [--fashion-seconds S] [--splits 0,1,2]

Per set, as full_train does it: one stratified 70/15/15 split (``recipes.stratified_split``); the
quick recipe (``heads.automl_fit`` on the product's ONNX features lite0/lite2/pixels) fitted on
train, its val probabilities handed to ``recipes.search`` (fine-tune recipes + blends, selected on
val); the winner exported as the one ONNX graph full_train stores (``ensemble.BlendGraph``) and
scored through onnxruntime on the test split, next to the quick head on the same test split.

Sets: hymenoptera (train+val folders, 397 photos), dtd10 (all 1,200 photos, 10 classes: the
"1k-image run"), Fashion-MNIST with 6,000 labeled training images (600 per class, seed 0).
Quick features are cached under bench/out/cache; the search itself is timed from scratch.

``--splits``: the split seeds to run (default 0). With several, each split is a row and the margin is
also given pooled over their test images (a paired interval over N x 15% of the set, not 15%).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATASETS, HYMENOPTERA, OUT_DIR  # noqa: F401

CACHE = OUT_DIR / "cache"


def _folder_all(root: Path, subdirs: list[str]) -> tuple[list[str], list, np.ndarray]:
    classes = sorted({p.name for s in subdirs for p in (root / s).iterdir() if p.is_dir()})
    files, labels = [], []
    for s in subdirs:
        for ci, c in enumerate(classes):
            for f in sorted((root / s / c).iterdir()):
                if f.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                    files.append(f)
                    labels.append(ci)
    return classes, files, np.asarray(labels, dtype=np.int64)


def load(name: str):
    import learning_data as ld

    if name == "hymenoptera":
        return _folder_all(HYMENOPTERA, ["train", "val"])
    if name == "dtd10":
        return _folder_all(DATASETS / "dtd10", ["."])
    if name == "fashion":
        xtr = ld._idx(ld.FASHION_DIR / "train-images-idx3-ubyte.gz")
        ytr = ld._idx(ld.FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
        rng = np.random.default_rng(0)
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(ytr == c), 600, replace=False) for c in range(10)]))
        classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
        return classes, [ld._png(xtr[i]) for i in idx], ytr[idx]
    raise SystemExit(f"unknown set {name}")


def quick_features(name: str, images: list) -> dict[str, np.ndarray]:
    import learning_data as ld

    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for feat in ld.FEATURES:
        path = CACHE / f"finetune-{name}-{len(images)}-{feat}.npy"
        if not path.exists():
            emb = ld._embedder(feat)
            t0 = time.perf_counter()
            X = np.concatenate([emb.embed(images[i : i + 32], batch_size=32) for i in range(0, len(images), 32)])
            # stored as float16 by the product: the quick model sees the round trip
            np.save(path, X.astype(np.float16).astype(np.float32))
            print(f"  {name} {feat}: {len(images)} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        out[feat] = np.load(path)
    return out


def paired_interval(full_right: np.ndarray, quick_right: np.ndarray, *, rounds: int = 10_000) -> tuple[float, float]:
    """95% paired bootstrap interval of (full - quick) accuracy on the same test images: a margin whose
    interval holds 0 is not one the split can tell apart from noise."""
    rng = np.random.default_rng(0)
    diff = full_right.astype(np.float64) - quick_right.astype(np.float64)
    idx = rng.integers(0, len(diff), size=(rounds, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def margin(full_right: np.ndarray, quick_right: np.ndarray) -> list[float]:
    """[points, low, high]: the accuracy difference and its 95% paired interval, in points."""
    lo, hi = paired_interval(full_right, quick_right)
    diff = float(np.mean(full_right) - np.mean(quick_right))
    return [round(100 * diff, 1), round(100 * lo, 1), round(100 * hi, 1)]


def quick_fit(feats: dict, y: np.ndarray, rows, n_classes: int, max_seconds: float | None = 5.0):
    """The quick model's AutoML on ``rows`` (the classic features' PCA on every labeled row, as the product).
    ``max_seconds``: the product's cost cap (PICTOR_QUICK_SECONDS); None tries every candidate."""
    from training.ml import heads

    pool = {k: v for k, v in feats.items() if k in heads.CLASSIC}
    return heads.automl_fit(
        {k: v[rows] for k, v in feats.items()},
        y[rows],
        multi_label=False,
        n_classes=n_classes,
        pool=pool,
        max_seconds=max_seconds,
    )


def quick_all_right(feats: dict, y: np.ndarray, h_feats: dict, h_y: np.ndarray, n_classes: int, max_seconds):
    """The quick model fitted on every label, right/wrong on the hold-out, and its feature key."""
    from training.ml import heads
    from training.ml.features import FeatureKey

    quick_all = quick_fit(feats, y, np.arange(len(y)), n_classes, max_seconds)
    parts = list(FeatureKey.parse(quick_all.feature_key))
    x = heads.concat_features([h_feats[p] for p in parts]) if len(parts) > 1 else h_feats[parts[0]]
    return quick_all.head.predict_proba(x).argmax(1) == h_y, quick_all.feature_key


def holdout_tag(name: str, seed: int) -> str:
    """The cache tag of a hold-out run's labeled images (Fashion-MNIST's are the same on every seed)."""
    return f"{name}-holdout{seed}" if name != "fashion" else name


def holdout_features(name: str, seed: int, images: list, h_images: list) -> tuple[dict, dict]:
    """The quick features of a hold-out run's labeled images and of its held-out ones (cached)."""
    tag = holdout_tag(name, seed)
    return quick_features(tag, images), quick_features(f"{tag}-out" if name != "fashion" else "fashion-test", h_images)


def uncapped_baseline(run: dict, feats: dict, y: np.ndarray, h_feats: dict, h_y: np.ndarray) -> None:
    """Add to a hold-out run the quick model without the cost cap (every candidate tried: on a busy
    CPU the 5 s cap can skip the combinations, which makes the capped baseline weaker than it can be)."""
    right, key = quick_all_right(feats, y, h_feats, h_y, int(y.max()) + 1, None)
    if run["refit"]["reason"] not in ("refitted", "quick_alone"):
        # what full_train serves then: the split's graph whole (runs before this rule scored the
        # split's net with the probe refitted on all labels)
        run["holdout_right"]["refit"] = run["holdout_right"]["split"]
        run["holdout_accuracy"]["refit"] = run["holdout_accuracy"]["split"]
        run["margin_vs_quick_all"]["refit"] = run["margin_vs_quick_all"]["split"]
    refit = np.asarray(run["holdout_right"]["refit"], bool)
    run["holdout_right"]["quick_uncapped"] = right.astype(int).tolist()
    run["holdout_accuracy"]["quick_uncapped"] = float(right.mean())
    run["quick_uncapped_features"] = key
    run["margin_vs_quick_all"]["refit_vs_uncapped"] = margin(refit, right)


def layer_features(tag: str, images: list) -> tuple[np.ndarray, float]:
    """The multi-layer features of lite0+lite2 (``training.ml.layers``), cached with the seconds they
    took (full_train computes them from the images on every run: the whole training's time counts them)."""
    from training.ml import layers

    # "served": computed as the served graph computes them (one input at 260 px, lite0's resized in-graph)
    path = CACHE / f"finetune-{tag}-{len(images)}-layers-served.npz"
    if not path.exists():
        t0 = time.perf_counter()
        CACHE.mkdir(parents=True, exist_ok=True)
        X = layers.compute(images, ["lite0", "lite2"])
        np.savez(path, X=X, seconds=time.perf_counter() - t0)
        print(f"  {tag} layers: {len(images)} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    saved = np.load(path)
    return saved["X"], float(saved["seconds"])


class Probe:
    """full_train's probe (training/full.py ``_probe_choice``): the quick recipe fitted on the train
    rows, or the multi-layer probe when its out-of-fold log loss there is lower."""

    def __init__(self, feats: dict, L: np.ndarray, y: np.ndarray, rows, n_classes: int) -> None:
        from training.ml import heads, layers
        from training.ml.features import FeatureKey

        self.quick = quick_fit(feats, y, rows, n_classes)
        self.layers = layers.fit(L[rows], y[rows], multi_label=False, n_classes=n_classes, max_seconds=5.0)
        self.cv = {
            "quick": heads.log_loss(self.quick.oof_probs, y[rows], multi_label=False),
            "layers": layers.cv_log_loss(self.layers, y[rows], multi_label=False),
        }
        self.kind = "quick" if self.cv["quick"] <= self.cv["layers"] else "layers"
        self.name = "quick head" if self.kind == "quick" else "multi-layer probe"
        self.chosen = self.quick if self.kind == "quick" else self.layers
        self.parts = list(FeatureKey.parse(self.quick.feature_key)) if self.kind == "quick" else ["lite0", "lite2"]
        self.feats, self.L = feats, L

    def X(self, source: dict, L: np.ndarray, rows=slice(None)) -> np.ndarray:
        """The chosen probe's rows from quick features ``source`` and multi-layer features ``L``."""
        from training.ml import heads

        if self.kind == "layers":
            return L[rows]
        p = self.parts
        return heads.concat_features([source[k][rows] for k in p]) if len(p) > 1 else source[p[0]][rows]

    def probs(self, rows) -> np.ndarray:
        return self.chosen.head.predict_proba(self.X(self.feats, self.L, rows))

    def refit_head(self, y: np.ndarray, n_classes: int):
        """The chosen probe's recipe on every labeled row (what ``_refit`` stores)."""
        from training.ml import heads

        if self.kind == "layers":
            return heads.refit_recipe(
                {"layers": self.L}, y, feature_key="layers", l2=self.layers.l2, multi_label=False, n_classes=n_classes
            )
        pool = {k: v for k, v in self.feats.items() if k in heads.CLASSIC}
        q = self.quick
        return heads.refit_recipe(
            self.feats, y, feature_key=q.feature_key, l2=q.l2, multi_label=False, n_classes=n_classes, pool=pool
        )

    def graph(self, head):
        from training.ml import layers
        from training.ml.ensemble import QuickGraph

        if self.kind == "layers":
            return layers.LayerHead(self.parts, head.W, head.b, multi_label=False)
        return QuickGraph(self.parts, head.W, head.b, multi_label=False)

    def served(self, net, head, result, weight: float | None = None):
        """The graph full_train stores (``full._blend``): ``net`` blended with this probe's ``head``
        at the search's weight (or ``weight``), its input the largest resolution a part needs."""
        from training.ml.ensemble import BlendGraph

        weight = result.weight if weight is None else weight
        return BlendGraph(
            net,
            weight=weight,
            tta=result.tta,
            multi_label=False,
            quick=self.graph(head) if weight < 1 else None,
            finetune_resolution=result.resolution,
        )

    def info(self) -> dict:
        return {"kind": self.kind, "cv_log_loss": {k: round(v, 4) for k, v in self.cv.items()}}


def search_on(images, y, train, val, probe: Probe, n_classes: int, seconds: float, progress=None):
    """The product's recipe search on one split (full_train's call)."""
    from training.ml import recipes

    return recipes.search(
        train_items=[(images[i], int(y[i])) for i in train],
        val_items=[(images[i], int(y[i])) for i in val],
        num_classes=n_classes,
        multi_label=False,
        quick_val_probabilities=probe.probs(val),
        probe_name=probe.name,
        config=recipes.SearchConfig(max_seconds=seconds),
        progress=progress,
    )


def run(name: str, seconds: float, split_seed: int = 0) -> dict:
    from training.ml import heads, recipes
    from training.ml.features import FeatureKey

    classes, images, y = load(name)
    feats = quick_features(name, images)
    L, l_seconds = layer_features(name, images)
    train, val, test = recipes.stratified_split(list(y), seed=split_seed)
    t_total = time.perf_counter() - l_seconds
    t0 = time.perf_counter()
    probe = Probe(feats, L, y, train, len(classes))
    quick = probe.quick
    t_quick = time.perf_counter() - t0
    parts = list(FeatureKey.parse(quick.feature_key))

    def qx(rows):
        return heads.concat_features([feats[p][rows] for p in parts]) if len(parts) > 1 else feats[parts[0]][rows]

    q_val, q_test = quick.head.predict_proba(qx(val)), quick.head.predict_proba(qx(test))
    quick_acc = float((q_test.argmax(1) == y[test]).mean())

    def progress(p: dict) -> None:
        if p.get("phase") == "caching" or (p.get("phase") == "validated" and p.get("epoch") in (1, p.get("epochs"))):
            print(
                f"  {name}: {p.get('phase')} {p.get('candidate')} epoch {p.get('epoch')} val_acc {p.get('val_accuracy')}",
                file=sys.stderr,
                flush=True,
            )

    result = search_on(images, y, train, val, probe, len(classes), seconds, progress)
    probs = _graph_probs(probe.served(result.model, probe.chosen.head, result), [images[i] for i in test])
    t_total = time.perf_counter() - t_total
    full_acc = float((probs.argmax(1) == y[test]).mean())
    lo, hi = paired_interval(probs.argmax(1) == y[test], q_test.argmax(1) == y[test])
    return {
        "set": name,
        "split_seed": split_seed,
        "full_right": (probs.argmax(1) == y[test]).astype(int).tolist(),
        "quick_right": (q_test.argmax(1) == y[test]).astype(int).tolist(),
        "n": len(images),
        "split": [len(train), len(val), len(test)],
        "quick_features": quick.feature_key,
        "probe": probe.info(),
        "quick_test_accuracy": quick_acc,
        "quick_val_accuracy": float((q_val.argmax(1) == y[val]).mean()),
        "full_test_accuracy": full_acc,
        "full_val_accuracy": result.val_accuracy,
        "margin_points": round(100 * (full_acc - quick_acc), 1),
        "margin_interval_points": [round(100 * lo, 1), round(100 * hi, 1)],
        "recipe": result.recipe,
        "search_seconds": round(result.seconds, 1),
        "quick_seconds": round(t_quick, 1),
        "total_seconds": round(t_total, 1),
        "budget_seconds": seconds,
        "stop_reason": result.stop_reason,
        "candidates": result.candidates,
    }


def load_holdout(name: str, split_seed: int, per_class: int):
    """(classes, labeled images, labels, hold-out images, hold-out labels): what a user labeled, and
    photos of the same classes the product never sees. Fashion-MNIST: its 6k labeled set and its
    own 10k test set; others: ``per_class`` images per class drawn out with the seed."""
    classes, images, y = load(name)
    if name == "fashion":
        import learning_data as ld

        xte = ld._idx(ld.FASHION_DIR / "t10k-images-idx3-ubyte.gz")
        yte = ld._idx(ld.FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        return classes, images, y, [ld._png(a) for a in xte], yte
    rng = np.random.default_rng(1000 + split_seed)
    out = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(len(classes))])
    )
    keep = np.setdiff1d(np.arange(len(y)), out)
    return classes, [images[i] for i in keep], y[keep], [images[i] for i in out], y[out]


def _graph_probs(graph, images: list) -> np.ndarray:
    from training.ml import backbone as bb
    from training.ml.ensemble import export_probabilities_onnx

    resolution = graph.input_resolution
    with tempfile.TemporaryDirectory() as tmp:
        runner = bb.OnnxRunner(export_probabilities_onnx(graph, Path(tmp) / "m.onnx", resolution))
        return np.concatenate(
            [
                runner.run(bb.preprocess(images[i : i + 32], resolution))["probabilities"]
                for i in range(0, len(images), 32)
            ]
        )


def run_holdout(name: str, seconds: float, split_seed: int, per_class: int, refit_seconds: float) -> dict:
    """full_train's whole path on a labeled set, judged on photos it never saw.

    On the labeled set, as full_train does it: split 70/15/15, quick recipe on train, search, the
    split's graph scored on its test split (the estimate), then ``recipes.refit`` on every label
    with the probe (quick head or multi-layer probe: ``Probe``) refitted by ``heads.refit_recipe``.
    On the hold-out: the split's graph (what was stored before the refit existed), the refitted graph
    (what is stored now), and the quick model a user has from the same labels (``heads.automl_fit``
    on all of them, as quick_train; with the product's cost cap, and without it)."""
    from training.ml import recipes

    classes, images, y, h_images, h_y = load_holdout(name, split_seed, per_class)
    feats, h_feats = holdout_features(name, split_seed, images, h_images)
    L, l_seconds = layer_features(holdout_tag(name, split_seed), images)
    t_total = time.perf_counter() - l_seconds
    train, val, test = recipes.stratified_split(list(y), seed=split_seed)
    probe = Probe(feats, L, y, train, len(classes))
    result = search_on(images, y, train, val, probe, len(classes), seconds)

    split_graph = probe.served(result.model, probe.chosen.head, result)
    est = _graph_probs(split_graph, [images[i] for i in test])
    t0 = time.perf_counter()
    fitted = recipes.refit(
        items=[(img, int(t)) for img, t in zip(images, y)],
        num_classes=len(classes),
        multi_label=False,
        result=result,
        max_seconds=refit_seconds,
    )
    head_all = probe.refit_head(y, len(classes))
    # As full_train: when the net's refit is skipped or abandoned, the split's graph is served whole.
    served_refit = fitted.reason in ("refitted", "quick_alone")
    refit_net = fitted.model if fitted.model is not None else result.model
    refit_graph = probe.served(refit_net, head_all, result) if served_refit else None
    t_refit = time.perf_counter() - t0
    t_total = time.perf_counter() - t_total
    qa_right, qa_key = quick_all_right(feats, y, h_feats, h_y, len(classes), 5.0)
    right = {
        "quick_all": qa_right,
        "split": _graph_probs(split_graph, h_images).argmax(1) == h_y,
        "refit": (_graph_probs(refit_graph, h_images).argmax(1) == h_y) if refit_graph is not None else None,
        # diagnostic: the probe alone refitted on all labels (what the blend is judged against)
        "probe_alone": _graph_probs(probe.served(None, head_all, result, 0.0), h_images).argmax(1) == h_y,
    }
    if right["refit"] is None:
        right["refit"] = right["split"]
    margins = {k: margin(right[k], right["quick_all"]) for k in ("split", "refit", "probe_alone")}
    out = {
        "set": name,
        "split_seed": split_seed,
        "labeled": len(y),
        "holdout": len(h_y),
        "split": [len(train), len(val), len(test)],
        "estimate_split_test_accuracy": float((est.argmax(1) == y[test]).mean()),
        "quick_split_test_accuracy": float(
            (probe.quick.head.predict_proba(probe.quick.build(feats)[test]).argmax(1) == y[test]).mean()
        ),
        "probe": probe.info(),
        "holdout_accuracy": {k: float(v.mean()) for k, v in right.items()},
        "holdout_right": {k: v.astype(int).tolist() for k, v in right.items()},
        "margin_vs_quick_all": margins,
        "quick_all_features": qa_key,
        "recipe": result.recipe,
        "refit": {"reason": fitted.reason, "seconds": round(t_refit, 1), "estimated_seconds": fitted.estimated_seconds},
        "search_seconds": round(result.seconds, 1),
        "budget_seconds": seconds,
        "refit_budget_seconds": refit_seconds,
        "total_seconds": round(t_total, 1),
        "stop_reason": result.stop_reason,
        "selection_check": result.selection_check,
    }
    uncapped_baseline(out, feats, y, h_feats, h_y)
    return out


def holdout_report(name: str, runs: list[dict]) -> str:
    lines = [
        f"### {name}: the full model against the quick model a user has from the same labels, on photos neither saw",
        "",
        "| split | labeled (train/val/test) | hold-out | quick on all labels | full, split only (before) | full as served (refitted on all labels unless the refit was skipped) | margin now (points, 95% paired) | margin before | quick without cost cap | margin now vs it | recipe | refit s (est.) | whole training s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in runs:
        a, m = r["holdout_accuracy"], r["margin_vs_quick_all"]
        check = r.get("selection_check")
        if "probe_alone" in a:
            pa = m["probe_alone"]
            notes.append(
                f"- split {r['split_seed']}: the probe alone ({r['probe']['kind']}, refitted on all labels) "
                f"{a['probe_alone']:.3f}, {pa[0]:+.1f} [{pa[1]:+.1f}, {pa[2]:+.1f}] against quick on all labels"
                + (
                    f"; validation: probe {check['probe_val_accuracy']:.3f}, selected blend "
                    f"{check['selected_val_accuracy']:.3f}, chosen out of sample (cross-fitted) "
                    f"{check['cross_fitted_val_accuracy']:.3f}; probe kept by: {check['probe_kept_by'] or 'neither check'}"
                    if check
                    else ""
                )
            )
        lines.append(
            f"| {r['split_seed']} | {r['labeled']} ({'/'.join(map(str, r['split']))}) | {r['holdout']} | {a['quick_all']:.3f} ({r['quick_all_features']}) "
            f"| {a['split']:.3f} | {a['refit']:.3f} | {m['refit'][0]:+.1f} [{m['refit'][1]:+.1f}, {m['refit'][2]:+.1f}] "
            f"| {m['split'][0]:+.1f} [{m['split'][1]:+.1f}, {m['split'][2]:+.1f}] "
            f"| {a['quick_uncapped']:.3f} ({r['quick_uncapped_features']}) "
            f"| {m['refit_vs_uncapped'][0]:+.1f} [{m['refit_vs_uncapped'][1]:+.1f}, {m['refit_vs_uncapped'][2]:+.1f}] | {r['recipe']} "
            f"| {r['refit']['seconds']:.0f} ({r['refit']['estimated_seconds']:.0f}, {r['refit']['reason']}) | {r['total_seconds']:.0f} |"
        )
    if len(runs) > 1:
        q = np.concatenate([np.asarray(r["holdout_right"]["quick_all"], bool) for r in runs])
        row = f"| **pooled** | | {len(q)} | {q.mean():.3f} |"
        for k in ("split", "refit"):
            f = np.concatenate([np.asarray(r["holdout_right"][k], bool) for r in runs])
            row += f" {f.mean():.3f} |"
        margins = []
        for k in ("refit", "split"):
            f = np.concatenate([np.asarray(r["holdout_right"][k], bool) for r in runs])
            lo, hi = paired_interval(f, q)
            margins.append(f" **{100 * (f.mean() - q.mean()):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]** |")
        u = np.concatenate([np.asarray(r["holdout_right"]["quick_uncapped"], bool) for r in runs])
        f = np.concatenate([np.asarray(r["holdout_right"]["refit"], bool) for r in runs])
        lo, hi = paired_interval(f, u)
        margins.append(f" {u.mean():.3f} | **{100 * (f.mean() - u.mean()):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]** |")
        lines.append(row + "".join(margins) + " | | |")
    if notes:
        lines += ["", "The probe the blends are judged against, and the selection check (``recipes.search``):", ""]
        lines += notes
    lines.append("")
    lines.append(
        "Hold-out: photos of the same classes outside the labeled set (Fashion-MNIST: its 10k test set). "
        "Quick on all labels: the AutoML quick recipe fitted on every labeled image (no subsample cap), "
        "with the product's 5 s cost cap (PICTOR_QUICK_SECONDS: on a busy CPU it can skip the feature "
        "combinations) and without it. "
        "Whole training: quick fit, search, export and refit (the search's budget plus the refit's)."
    )
    return "\n".join(lines) + "\n"


def interval(r: dict) -> str:
    lo_hi = r.get("margin_interval_points")
    return f" [{lo_hi[0]:+.1f}, {lo_hi[1]:+.1f}]" if lo_hi else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=["hymenoptera", "dtd10", "fashion"])
    ap.add_argument("--seconds", type=float, default=600.0, help="search budget (PICTOR_FINETUNE_SECONDS)")
    ap.add_argument("--fashion-seconds", type=float, default=900.0)
    ap.add_argument("--splits", default="0", help="split seeds, comma-separated (pooled margin when several)")
    ap.add_argument("--out", default="finetune.md", help="report file name in bench/out")
    ap.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="judge on N photos per class kept out of the labels (fashion: its test set)",
    )
    ap.add_argument("--refit-seconds", type=float, default=240.0, help="refit budget (PICTOR_FINETUNE_REFIT_SECONDS)")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="with --holdout: score the stored runs again (the uncapped quick baseline; the served graph when "
        "the refit was skipped) and rewrite the report (no training)",
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    seeds = [int(x) for x in args.splits.split(",")]
    if args.holdout and args.rescore:
        text = ""
        for name in args.sets:
            saved = OUT_DIR / f"finetune-holdout-{name}.json"
            runs = json.loads(saved.read_text())
            for r in runs:
                _, images, y, h_images, h_y = load_holdout(name, r["split_seed"], args.holdout)
                feats, h_feats = holdout_features(name, r["split_seed"], images, h_images)
                uncapped_baseline(r, feats, y, h_feats, h_y)
            saved.write_text(json.dumps(runs))
            text += holdout_report(name, runs) + "\n"
        print(text)
        (OUT_DIR / args.out).write_text(text)
        return
    if args.holdout:
        text = ""
        for name in args.sets:
            runs = []
            for seed in seeds:
                budget = args.fashion_seconds if name == "fashion" else args.seconds
                runs.append(run_holdout(name, budget, seed, args.holdout, args.refit_seconds))
                # compact: the per-photo right/wrong lists (10k each on Fashion-MNIST) would be a line apiece
                (OUT_DIR / f"finetune-holdout-{name}.json").write_text(json.dumps(runs))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "holdout_right"}), flush=True)
            text += holdout_report(name, runs) + "\n"
        print(text)
        (OUT_DIR / args.out).write_text(text)
        return
    for name in args.sets:
        runs = []
        for seed in seeds:
            runs.append(run(name, args.fashion_seconds if name == "fashion" else args.seconds, seed))
            (OUT_DIR / f"finetune-{name}.json").write_text(json.dumps(runs if len(runs) > 1 else runs[0], indent=1))
            print(
                json.dumps({k: v for k, v in runs[-1].items() if not k.endswith(("candidates", "right"))}), flush=True
            )
    # The table shows every set measured so far (each set's latest run, its own JSON), so sets can
    # be run separately on a shared machine.
    per_set = {}
    for name in [n for n in ["hymenoptera", "dtd10", "fashion"] if args.out == "finetune.md" or n in args.sets]:
        saved = OUT_DIR / f"finetune-{name}.json"
        if saved.exists():
            data = json.loads(saved.read_text())
            per_set[name] = data if isinstance(data, list) else [data]
    lines = [
        "| set | images (train/val/test) | quick test acc | full test acc | margin (points, 95% paired bootstrap) | selected recipe | search s (budget) | whole training s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for runs in per_set.values():
        for r in runs:
            split = f", split {r['split_seed']}" if len(runs) > 1 else ""
            lines.append(
                f"| {r['set']}{split} | {r['n']} ({'/'.join(map(str, r['split']))}) | {r['quick_test_accuracy']:.3f} ({r['quick_features']}) "
                f"| {r['full_test_accuracy']:.3f} | {r['margin_points']:+.1f}{interval(r)} | {r['recipe']} | {r['search_seconds']:.0f} ({r['budget_seconds']:.0f}, {r['stop_reason']}) "
                f"| {r['total_seconds']:.0f} |"
            )
        if len(runs) > 1 and all("full_right" in r for r in runs):
            full = np.concatenate([np.asarray(r["full_right"], bool) for r in runs])
            quick = np.concatenate([np.asarray(r["quick_right"], bool) for r in runs])
            lo, hi = paired_interval(full, quick)
            lines.append(
                f"| **{runs[0]['set']}, {len(runs)} splits pooled** | {len(full)} test images | {quick.mean():.3f} | {full.mean():.3f} "
                f"| **{100 * (full.mean() - quick.mean()):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]** | | | |"
            )
    rows = [r for runs in per_set.values() for r in runs]
    lines.append("")
    lines.append(
        "The interval resamples the test images (full and quick answers paired): where it holds 0, that split cannot tell the two apart."
    )
    lines.append("")
    lines.append("Candidates (val accuracy of the best blend per candidate; test never used for selection):")
    lines.append("")
    for r in rows:
        cs = ", ".join(
            f"{c['backbone']}/K{c.get('blocks', '-')}/lr{c.get('lr', '-')}: "
            + (
                f"{c['val_accuracy']:.3f} (w {c['weight']:g}{', tta' if c.get('tta') else ''})"
                if "val_accuracy" in c
                else c.get("skipped", "")
            )
            for c in r["candidates"]
        )
        split = f" (split {r['split_seed']})" if len(per_set.get(r["set"], [])) > 1 else ""
        lines.append(f"- {r['set']}{split}: {cs}")
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT_DIR / args.out).write_text(text)


if __name__ == "__main__":
    main()
