"""Ingest throughput: the whole path upload → validated → stored → embedded, against raw timm.

    .venv/bin/python bench/ingest.py            # hymenoptera train (244 JPEGs), best of 3 rounds
    .venv/bin/python bench/ingest.py --quick    # 48 images, 1 round
    .venv/bin/python bench/ingest.py --val      # train + val (397 JPEGs)

Standalone: sets up Django itself on a temporary PICTOR_DATA_DIR with SQLite and the embedded
file cache/broker (no PostgreSQL or Redis), migrates, creates a user and a project, and runs:

* **Pictor pipeline**, stage 1 "validate + store": ``labeling.services.samples_ingest`` on the
  images' bytes (in uploads of 32, as several API requests would): format/size/pixel checks and
  full decode, SHA-256 dedupe, WebP thumbnail, both files written to storage, the Sample row,
  and the post-commit ``samples_added`` signal (which schedules the embedding task: a message to
  the embedded broker, as in production). Stage 2 "embed": ``training.services.embeddings_compute``
  in this process, i.e. what the ``embeddings`` worker runs: per backbone, batches of
  ``PICTOR_EMBED_BATCH`` samples read back from storage, decoded, resized, run through the
  cached onnxruntime ``Embedder`` and stored as float16 rows.
* **Baseline "raw timm"**: per backbone, the same timm model with the same weights
  (``training.ml.backbone.load_backbone``), ``eval()`` and ``torch.no_grad()``, the same batch size,
  on the same bytes in memory: PIL decode + ``convert("RGB")``, timm's standard eval transform
  (``timm.data.create_transform``: bicubic resize of the shorter side to R/0.875, centre crop R,
  to tensor, normalise with mean = std = 0.5, the same pixels the pipeline feeds its model),
  ``torch.stack``, ``forward_features`` + ``forward_head(pre_logits=True)`` (the pooled 1280-d
  features the pipeline stores) and L2 normalisation. No storage, no database, no validation.

Both sides are warmed up first (models loaded, one batch run): a running worker keeps its
Embedders loaded. Rounds alternate pipeline and baseline, each round uses a fresh project, and
the fastest round of each side is reported (on a shared machine noise only ever adds time).
Results: printed, and written to bench/out/ingest.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import HYMENOPTERA, OUT_DIR, REPO, django_setup

OUT = OUT_DIR / "ingest.md"
UPLOAD_SIZE = 32


def _images(include_val: bool, limit: int | None) -> list[tuple[str, bytes]]:
    if not HYMENOPTERA.is_dir():
        sys.exit(f"hymenoptera_data not found at {HYMENOPTERA}; set PICTOR_DATASETS to the datasets folder")
    splits = ["train", "val"] if include_val else ["train"]
    paths = [
        p
        for s in splits
        for c in ("ants", "bees")
        for p in sorted((HYMENOPTERA / s / c).iterdir())
        if p.suffix.lower() in (".jpg", ".jpeg")
    ]
    if limit:
        # Both classes, evenly, for --quick.
        ants = [p for p in paths if p.parent.name == "ants"][: limit // 2]
        bees = [p for p in paths if p.parent.name == "bees"][: limit - len(ants)]
        paths = ants + bees
    return [(p.name, p.read_bytes()) for p in paths]


# ----------------------------------------------------------------------------- Pictor pipeline


class Pipeline:
    def __init__(self, backbones: list[str]) -> None:
        from django.contrib.auth import get_user_model

        self.backbones = backbones
        self.user = get_user_model().objects.create_user("bench", password="bench-password-123")
        self.rounds = 0

    def warm_up(self, images: list[tuple[str, bytes]]) -> None:
        from training.embedders import embedder_get

        for backbone in self.backbones:
            embedder_get(backbone).embed([data for _, data in images[:16]], batch_size=16)
        self.run(images[:8])  # first queries, first storage writes, first broker message

    def run(self, images: list[tuple[str, bytes]]) -> dict:
        from labeling import services as labeling
        from projects.services import project_create
        from training import services as training
        from training.models import Embedding

        self.rounds += 1
        project = project_create(name=f"Bench {self.rounds}", owner=self.user)
        items = [labeling.IngestItem(filename=name, data=data) for name, data in images]
        t0 = time.perf_counter()
        accepted = 0
        for start in range(0, len(items), UPLOAD_SIZE):
            report = labeling.samples_ingest(project=project, items=items[start : start + UPLOAD_SIZE], user=self.user)
            accepted += report.accepted
        t1 = time.perf_counter()
        embed = {}
        for backbone in self.backbones:
            s = time.perf_counter()
            written = training.embeddings_compute(project_id=project.pk, backbones=[backbone])
            embed[backbone] = time.perf_counter() - s
            assert written == accepted, (backbone, written, accepted)
        t2 = time.perf_counter()
        errors = Embedding.objects.filter(project_id=project.pk).exclude(error="").count()
        assert errors == 0, f"{errors} embedding errors"
        return {"n": accepted, "ingest": t1 - t0, "embed": embed, "total": t2 - t0}


# ----------------------------------------------------------------------------- baseline


class RawTimm:
    def __init__(self, backbones: list[str], batch_size: int) -> None:
        import torch
        from timm.data import create_transform

        from training.ml.backbone import CROP_PCT, get_spec, load_backbone

        self.torch = torch
        self.batch_size = batch_size
        self.models = {}
        for name in backbones:
            r = get_spec(name).resolution
            transform = create_transform(
                input_size=(3, r, r), interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=CROP_PCT
            )
            self.models[name] = (load_backbone(name).eval(), transform)

    def warm_up(self, images: list[tuple[str, bytes]]) -> None:
        """Warm up, then pick torch's faster thread count on this machine (the stronger baseline).

        With other jobs on the cores, OpenMP's spinning threads can make 2 threads slower than 1.
        """
        torch = self.torch
        sample = images[: self.batch_size]
        self.calibration = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            self.run(sample[:2])
            self.calibration[threads] = self.run(sample)["total"] / len(sample)
        self.threads = min(self.calibration, key=self.calibration.get)
        torch.set_num_threads(self.threads)

    def _embed(self, model, transform, images: list[bytes]):
        from PIL import Image

        torch = self.torch
        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack(
                    [
                        transform(Image.open(io.BytesIO(b)).convert("RGB"))
                        for b in images[start : start + self.batch_size]
                    ]
                )
                features = model.forward_head(model.forward_features(batch), pre_logits=True)
                out.append(torch.nn.functional.normalize(features, dim=1))
        return torch.cat(out)

    def run(self, images: list[tuple[str, bytes]]) -> dict:
        data = [d for _, d in images]
        per = {}
        t0 = time.perf_counter()
        for name, (model, transform) in self.models.items():
            s = time.perf_counter()
            vectors = self._embed(model, transform, data)
            per[name] = time.perf_counter() - s
            assert vectors.shape == (len(data), 1280)
        return {"n": len(data), "embed": per, "total": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def report(args, images, pipe_runs, base_runs, backbones, batch_size, seconds) -> str:
    import onnxruntime
    import torch

    n = len(images)
    best_pipe = min(pipe_runs, key=lambda r: r["total"])
    best_base = min(base_runs, key=lambda r: r["total"])
    pipe_ips = n / best_pipe["total"]
    base_ips = n / best_base["total"]
    ratio = pipe_ips / base_ips
    ms = lambda seconds_: 1000 * seconds_ / n  # noqa: E731

    # Best of each stage separately too (a stage's best round need not be the best total).
    ingest_best = min(r["ingest"] for r in pipe_runs)
    embed_best = {b: min(r["embed"][b] for r in pipe_runs) for b in backbones}
    base_best = {b: min(r["embed"][b] for r in base_runs) for b in backbones}
    embed_sum = sum(embed_best.values())
    base_sum = sum(base_best.values())
    verdict = "met" if ratio >= 0.9 else "MISSED"
    names = " + ".join(backbones)
    split = "train + val" if args.val else "train"
    lines = [
        f"# Ingest throughput: upload → validated → stored → embedded ({names})",
        "",
        f"{n} hymenoptera {split} JPEGs{' (--quick subset)' if args.quick else ''}, batch size {batch_size}, "
        f"best of {len(pipe_runs)} round(s) per side, rounds alternating. "
        f"{os.cpu_count()} CPU cores, no GPU; load average at start {args.load:.2f} (other jobs share the machine). "
        f"torch {torch.__version__} ({torch.get_num_threads()} thread(s), the faster in a warm-up calibration: "
        + ", ".join(f"{t} → {1000 * v:.0f} ms/image" for t, v in args.calibration.items())
        + f"), onnxruntime {onnxruntime.__version__} ({os.cpu_count()} threads), "
        f"Python {platform.python_version()}; wall time {seconds:.0f} s.",
        "",
        "| path | images/s | ms/image |",
        "|---|---:|---:|",
        f"| Pictor: `samples_ingest` (validate + store) then `embeddings_compute` ({names}, onnxruntime) | "
        f"{_fmt(pipe_ips)} | {_fmt(ms(best_pipe['total']))} |",
        f"| Baseline: raw timm forward ({names}, torch eval + no_grad, incl. JPEG decode + resize) | "
        f"{_fmt(base_ips)} | {_fmt(ms(best_base['total']))} |",
        f"| **ratio Pictor / baseline** (target ≥ 0.9: {verdict}) | **{ratio:.2f}** | |",
        "",
        "Per stage (best round of each stage):",
        "",
        "| stage | ms/image | images/s |",
        "|---|---:|---:|",
        f"| Pictor validate + store (`samples_ingest`: checks, decode, SHA-256, thumbnail, 2 files, row, signal) | "
        f"{_fmt(ms(ingest_best))} | {_fmt(n / ingest_best)} |",
    ]
    for b in backbones:
        lines.append(
            f"| Pictor embed {b} (read from storage, decode, resize, onnxruntime, float16 row) | "
            f"{_fmt(ms(embed_best[b]))} | {_fmt(n / embed_best[b])} |"
        )
    lines.append(f"| Pictor embed, all backbones | {_fmt(ms(embed_sum))} | {_fmt(n / embed_sum)} |")
    for b in backbones:
        lines.append(
            f"| Baseline {b} (decode, timm transform, torch forward) | {_fmt(ms(base_best[b]))} | {_fmt(n / base_best[b])} |"
        )
    lines.append(f"| Baseline, all backbones | {_fmt(ms(base_sum))} | {_fmt(n / base_sum)} |")
    lines += [
        "",
        f"Embedding alone, Pictor / baseline: {base_sum / embed_sum:.2f}× the baseline's speed. "
        f"Round-to-round spread (total, s): Pictor {', '.join(_fmt(r['total'], 2) for r in pipe_runs)}; "
        f"baseline {', '.join(_fmt(r['total'], 2) for r in base_runs)}.",
        "",
        "What the baseline includes: PIL decode of the JPEG bytes in memory, `convert('RGB')`, timm's eval "
        "transform (bicubic resize to R/0.875, centre crop R, to tensor, normalise to [-1, 1]), batching, "
        "`forward_features` + pooled pre-logits head, L2 normalisation; one pass per backbone, like the "
        "pipeline. What it leaves out and the pipeline pays for: validation, hashing, thumbnails, storage "
        "writes and reads, database rows, float16 encoding.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="48 images, one round")
    parser.add_argument("--val", action="store_true", help="also ingest the val split")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (default 3, --quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    rounds = args.rounds or (1 if args.quick else 3)

    images = _images(args.val, 48 if args.quick else None)
    data_dir = Path(tempfile.mkdtemp(prefix="pictor-bench-ingest-"))
    started = time.perf_counter()
    try:
        django_setup(data_dir)
        from django.conf import settings

        # The ONNX graphs are exported once and reused across runs (like a worker's model cache).
        settings.MODEL_CACHE_DIR = REPO / "data" / "bench-cache" / "model-cache"
        backbones = list(settings.PICTOR_BACKBONES)
        batch_size = settings.PICTOR_EMBED_BATCH

        print(
            f"{len(images)} images, backbones {backbones}, batch {batch_size}, {rounds} round(s); warming up…",
            flush=True,
        )
        pipeline = Pipeline(backbones)
        pipeline.warm_up(images)
        baseline = RawTimm(backbones, batch_size)
        baseline.warm_up(images)
        args.calibration = baseline.calibration
        print(f"torch threads: {baseline.threads} (calibration, s/image: {baseline.calibration})", flush=True)

        pipe_runs, base_runs = [], []
        for i in range(rounds):
            pipe_runs.append(pipeline.run(images))
            base_runs.append(baseline.run(images))
            print(
                f"round {i + 1}: pictor {pipe_runs[-1]['total']:.2f} s (ingest {pipe_runs[-1]['ingest']:.2f} s), "
                f"baseline {base_runs[-1]['total']:.2f} s",
                flush=True,
            )
        text = report(args, images, pipe_runs, base_runs, backbones, batch_size, time.perf_counter() - started)
    finally:
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"written to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
