"""The four data sets of bench/learning.py, with their features computed once and cached.

Each set is a labeled pool (what a team labels) and a disjoint test split. Images are encoded to
PNG/JPEG bytes exactly as uploads are, and embedded by the product's own embedders
(``training.ml.backbone.Embedder`` for lite0/lite2, ``training.ml.pixels.PixelEmbedder``).
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import DATASETS, HYMENOPTERA, OUT_DIR, REPO  # noqa: F401

CACHE = OUT_DIR / "cache"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FEATURES = ("lite0", "lite2", "pixels")


@dataclass
class DataSet:
    name: str
    classes: list[str]
    pool_images: list  # bytes or paths, loadable by training.ml.backbone.load_image
    y_pool: np.ndarray
    test_images: list
    y_test: np.ndarray
    #: a set derived from another by leaving classes out: (parent, pool rows, test rows) kept, so its
    #: features are the parent's cached rows
    parent: tuple | None = None


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _folder(split: Path):
    classes = sorted(p.name for p in split.iterdir() if p.is_dir())
    files, labels = [], []
    for ci, c in enumerate(classes):
        for f in sorted((split / c).iterdir()):
            if f.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                files.append(f)
                labels.append(ci)
    return classes, files, np.asarray(labels, dtype=np.int64)


def _split(n: int, y: np.ndarray, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified pool/test split."""
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(idx.size * test_share))
        test += idx[:k].tolist()
        pool += idx[k:].tolist()
    return np.sort(pool), np.sort(test)


def hymenoptera() -> DataSet:
    classes, ftr, ytr = _folder(HYMENOPTERA / "train")
    _, fte, yte = _folder(HYMENOPTERA / "val")
    return DataSet("hymenoptera", classes, ftr, ytr, fte, yte)


def dtd10() -> DataSet:
    classes, files, y = _folder(DATASETS / "dtd10")
    pool, test = _split(len(files), y, 0.5, seed=0)
    return DataSet("dtd10", classes, [files[i] for i in pool], y[pool], [files[i] for i in test], y[test])


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def fashion(pool: int = 2000, test: int = 2000) -> DataSet:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"{FASHION_DIR} missing: apt-get install -y dataset-fashion-mnist")
    xtr = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz")
    ytr = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = _idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    yte = _idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(0)
    itr = np.sort(rng.choice(len(ytr), pool, replace=False))
    ite = np.sort(rng.choice(len(yte), test, replace=False))
    classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
    return DataSet(
        f"fashion{pool}", classes, [_png(xtr[i]) for i in itr], ytr[itr], [_png(xte[i]) for i in ite], yte[ite]
    )


def digits() -> DataSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 grey levels, 8 x 8: stored as 8-bit PNGs the way a user would upload them
    imgs = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    y = d.target.astype(np.int64)
    pool, test = _split(len(y), y, 0.5, seed=0)
    return DataSet(
        "digits",
        [str(c) for c in range(10)],
        [_png(imgs[i]) for i in pool],
        y[pool],
        [_png(imgs[i]) for i in test],
        y[test],
    )


def subset(ds: DataSet, keep: list[str], name: str) -> DataSet:
    """``ds`` with only the classes ``keep`` (renumbered in ``ds``'s order), its features sliced from
    ``ds``'s cache."""
    kept = [c for c in ds.classes if c in keep]
    old = np.array([ds.classes.index(c) for c in kept])
    renum = np.full(len(ds.classes), -1)
    renum[old] = np.arange(old.size)
    keep_pool, keep_test = np.flatnonzero(renum[ds.y_pool] >= 0), np.flatnonzero(renum[ds.y_test] >= 0)
    return DataSet(
        name,
        kept,
        [ds.pool_images[i] for i in keep_pool],
        renum[ds.y_pool[keep_pool]],
        [ds.test_images[i] for i in keep_test],
        renum[ds.y_test[keep_test]],
        parent=(ds, keep_pool, keep_test),
    )


def fashion_without_shirt() -> DataSet:
    """Fashion-MNIST without "shirt" (whose ImageNet class "t-shirt" also claims): every other name maps,
    so it has a zero-shot model, a weak one (grey 28 px thumbnails), beside hymenoptera's strong one."""
    ds = fashion()
    return subset(ds, [c for c in ds.classes if c != "shirt"], f"{ds.name}-without-shirt")


def fashion_tops_and_bags() -> DataSet:
    """Fashion-MNIST's t-shirts, pullovers and bags: a zero-shot model between the two others
    (0.74 on test), for the choice between it and the quick model."""
    return subset(fashion(), ["t-shirt", "pullover", "bag"], "fashion2000-tops-and-bags")


LOADERS = {
    "hymenoptera": hymenoptera,
    "dtd10": dtd10,
    "fashion": fashion,
    "digits": digits,
    "fashion-without-shirt": fashion_without_shirt,
    "fashion-tops-and-bags": fashion_tops_and_bags,
}


def _embedder(name: str):
    if name == "pixels":
        from training.ml.pixels import PixelEmbedder

        return PixelEmbedder()
    from training.ml.backbone import Embedder

    return Embedder(name, cache_dir=str(REPO / "data" / "models"), threads=1)


def features(ds: DataSet, feature: str, split: str) -> np.ndarray:
    """(N, D) float32 features of the pool or test split, computed once (cached .npy)."""
    if ds.parent is not None:
        parent, keep_pool, keep_test = ds.parent
        return features(parent, feature, split)[keep_pool if split == "pool" else keep_test]
    CACHE.mkdir(parents=True, exist_ok=True)
    # v2: pixels from the backbones' 224 px centre crop (what ingest and the ONNX export compute)
    path = CACHE / f"{ds.name}-{split}-{feature}{'-v2' if feature == 'pixels' else ''}.npy"
    if path.exists():
        return np.load(path)
    images = ds.pool_images if split == "pool" else ds.test_images
    emb = _embedder(feature)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(images), 32):
        out.append(emb.embed(images[i : i + 32], batch_size=32))
    X = np.concatenate(out).astype(np.float32)
    # stored as float16 by the product: round-trip so the bench sees what the quick model sees
    X = X.astype(np.float16).astype(np.float32)
    np.save(path, X)
    print(
        f"  {ds.name} {split} {feature}: {len(images)} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True
    )
    return X


if __name__ == "__main__":
    for name in sys.argv[1:] or list(LOADERS):
        ds = LOADERS[name]()
        for feat in ("pixels", "lite0", "lite2"):
            for split in ("pool", "test"):
                features(ds, feat, split)
