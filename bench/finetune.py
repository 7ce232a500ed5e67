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


def run(name: str, seconds: float, split_seed: int = 0) -> dict:
    from training.ml import backbone as bb
    from training.ml import heads, recipes
    from training.ml.ensemble import BlendGraph, QuickGraph, export_probabilities_onnx
    from training.ml.features import FeatureKey

    classes, images, y = load(name)
    feats = quick_features(name, images)
    train, val, test = recipes.stratified_split(list(y), seed=split_seed)
    t_total = time.perf_counter()
    pool = {k: v for k, v in feats.items() if k in heads.CLASSIC}
    t0 = time.perf_counter()
    quick = heads.automl_fit(
        {k: v[train] for k, v in feats.items()},
        y[train],
        multi_label=False,
        n_classes=len(classes),
        pool=pool,
        max_seconds=5.0,
    )
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

    result = recipes.search(
        train_items=[(images[i], int(y[i])) for i in train],
        val_items=[(images[i], int(y[i])) for i in val],
        num_classes=len(classes),
        multi_label=False,
        quick_val_probabilities=q_val,
        config=recipes.SearchConfig(max_seconds=seconds),
        progress=progress,
    )
    quick_graph = (
        QuickGraph(parts, quick.head.W, quick.head.b, multi_label=False, input_resolution=result.resolution)
        if result.weight < 1
        else None
    )
    graph = BlendGraph(result.model, weight=result.weight, tta=result.tta, multi_label=False, quick=quick_graph)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_probabilities_onnx(graph, Path(tmp) / "m.onnx", result.resolution)
        runner = bb.OnnxRunner(path)
        timg = [images[i] for i in test]
        probs = np.concatenate(
            [
                runner.run(bb.preprocess(timg[i : i + 32], result.resolution))["probabilities"]
                for i in range(0, len(timg), 32)
            ]
        )
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
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    seeds = [int(x) for x in args.splits.split(",")]
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
