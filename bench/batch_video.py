"""Videos in batch jobs: a chunk's work on one video item (read from a folder source, content
detection, invoke's limits, streamed decode at the batch's fps, PICTOR_BATCH_INFER-sized forward
passes, segments, the result row written) against the raw decode + forward of the same model and
file, interleaved in the same run.

    .venv/bin/python bench/batch_video.py                 # 20 s 640x360 30 fps MP4, fps 1 and 5
    .venv/bin/python bench/batch_video.py --seconds 60 --repeats 5

Standalone like bench/video.py (whose video, quick model and raw loop it reuses): Django in this
process on a temporary SQLite data dir, PICTOR_BACKBONES=lite0. The raw loop runs with the same
forward-pass size (PICTOR_INVOKE_BATCH is set to PICTOR_BATCH_INFER). Written to bench/out/batch_video.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import HYMENOPTERA, OUT_DIR, django_setup

OUT = OUT_DIR / "batch_video.md"
INFER = 32


def batch_run(batch, chunk, reader) -> tuple[float, int]:
    from batches import services
    from batches.models import BatchResult

    BatchResult.objects.filter(batch=batch).delete()
    start = time.perf_counter()
    services._classify(batch, chunk, [(0, chunk.items[0])], reader)
    elapsed = time.perf_counter() - start
    row = BatchResult.objects.get(batch=batch)
    assert row.error is None and row.segments, row.error
    return elapsed, row.segments[-1][2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, nargs="+", default=[1, 5])
    args = parser.parse_args()
    if not HYMENOPTERA.is_dir():
        print(f"hymenoptera_data not found at {HYMENOPTERA}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="pictor-bench-batch-video-") as tmp:
        root = Path(tmp, "source")
        root.mkdir()
        django_setup(
            Path(tmp, "data"),
            PICTOR_BACKBONES="lite0",
            PICTOR_BATCH_INFER=str(INFER),
            PICTOR_INVOKE_BATCH=str(INFER),
            PICTOR_IMPORT_ROOTS=str(root),
        )
        from video import make_video, raw_run, setup

        from batches import services, sources
        from batches.models import Batch, BatchChunk

        project, model, _key = setup()
        data = make_video(args.seconds)
        (root / "clip.mp4").write_bytes(data)
        items = list(sources.folder_iter(str(root)))
        rows = []
        for fps in args.fps:
            batch = Batch.objects.create(
                project=project,
                source_kind=Batch.Kind.FOLDER,
                source_ref=str(root),
                model=model,
                model_version=model.version,
                fps=fps,
                status=Batch.Status.RUNNING,
            )
            chunk = BatchChunk.objects.create(batch=batch, index=0, items=items, size=len(items))
            with services.batch_reader(batch) as reader:
                batch_run(batch, chunk, reader)  # warm-up: sessions and the first decode
                raw_run(model, data, fps, forward=True)
                ours, raw = [], []
                for _ in range(args.repeats):
                    t, stop_ms = batch_run(batch, chunk, reader)
                    ours.append(t)
                    t, n_raw = raw_run(model, data, fps, forward=True)
                    raw.append(t)
            assert stop_ms == args.seconds * 1000, stop_ms
            o, r = statistics.median(ours), statistics.median(raw)
            rows.append((fps, n_raw, o, n_raw / o, r, n_raw / r, o / r))

    load = os.getloadavg()[0]
    lines = [
        "# Videos in batch jobs: a chunk's video item against raw decode + forward",
        "",
        f"{args.seconds} s H.264 MP4, 640x360, 30 fps ({len(data) / 1e6:.1f} MB) in a folder source; quick model "
        f"(lite0 + linear head); {INFER} frames per forward pass both ways; median of {args.repeats}; "
        f"{os.cpu_count()} CPUs, load {load:.1f}; Python {platform.python_version()}.",
        "",
        "| fps | sampled frames | batch item s | batch frames/s | raw s | raw frames/s | batch / raw time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fps, n, o, of, r, rf, ratio in rows:
        lines.append(f"| {fps:g} | {n} | {o:.2f} | {of:.1f} | {r:.2f} | {rf:.1f} | {ratio:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
