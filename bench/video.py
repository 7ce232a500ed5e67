"""Video invoke: sampled frames per second through the API, against the raw decode + forward pass of
the same deployed model, in the same run.

    .venv/bin/python bench/video.py                 # 20 s 640x360 30 fps MP4, ?fps= 1, 5 and 10
    .venv/bin/python bench/video.py --seconds 60 --repeats 5

Standalone: Django in this process on a temporary SQLite data dir (no PostgreSQL, no Redis),
PICTOR_BACKBONES=lite0. It ingests 10 ants + 10 bees from hymenoptera train, trains and deploys the
quick model (lite0 features + linear head) and makes an invoke-scoped API key. The test video is
built with PyAV from hymenoptera val photos (a new photo every second, H.264 at 30 fps).

* **API**: `POST /api/v1/projects/{id}/invoke?fps=F&format=series` with the video as a multipart
  `file`, through Django's test client (the whole view: key check, throttle, parsing, content
  sniffing, limits, streamed decode, PICTOR_INVOKE_BATCH-sized forward passes, segments, rendering
  and the response's schema shape) — in process, so no socket.
* **Raw**, interleaved with the API runs on the same file: PyAV decodes every frame, converts the
  one on screen at each k / F to RGB (full size), and the same cached predictor runs them in
  batches of PICTOR_INVOKE_BATCH. No validation, no limits, no segments.
* **Decode only**: the raw loop without the forward pass, for context.
* **Memory**: the process's peak RSS (a high-water mark) after a short video and then after one
  --memory-seconds long (same size, ?fps=5): decoding streams, so the long one must not raise the
  peak by anything like what holding its decoded frames would take (shown for comparison).

frames/s = sampled frames / wall time (median of --repeats). Written to bench/out/video.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import HYMENOPTERA, OUT_DIR, django_setup

OUT = OUT_DIR / "video.md"


def make_video(seconds: int, *, rate: int = 30, size=(640, 360)) -> bytes:
    import av
    from PIL import Image

    photos = (
        sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:10]
        + sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:10]
    )
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for second in range(seconds):
        frame = av.VideoFrame.from_image(Image.open(photos[second % len(photos)]).convert("RGB").resize(size))
        for _ in range(rate):
            for packet in stream.encode(frame):
                out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def setup():
    from django.contrib.auth import get_user_model

    from labeling import services as labeling
    from projects import keys
    from projects.services import project_create
    from training import runner
    from training import services as training
    from training.models import ModelVersion

    user = get_user_model().objects.create_user("bench", password="x" * 20)
    project = project_create(name="Video bench", owner=user)
    items = [
        labeling.IngestItem(filename=p.name, data=p.read_bytes(), labels=[cls])
        for cls in ("ants", "bees")
        for p in sorted((HYMENOPTERA / "train" / cls).glob("*.jpg"))[:10]
    ]
    assert labeling.samples_ingest(project=project, items=items, user=user).accepted == 20
    training.embeddings_compute(project_id=project.pk)
    assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
    model = ModelVersion.objects.filter(project=project).order_by("-version").first()
    if not model.deployed:
        training.model_deploy(model=model)
    key = keys.api_key_create(project=project, name="bench", scope="invoke")[1]
    return project, model, key


def api_run(client, project, key: str, data: bytes, fps: float) -> tuple[float, int]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    start = time.perf_counter()
    r = client.post(
        f"/api/v1/projects/{project.pk}/invoke?fps={fps:g}&format=series",
        {"file": SimpleUploadedFile("bench.mp4", data, content_type="video/mp4")},
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_HOST="localhost",
    )
    elapsed = time.perf_counter() - start
    assert r.status_code == 200, r.content[:500]
    return elapsed, r.json()["video"]["frames"]


def raw_run(model, data: bytes, fps: float, *, forward: bool) -> tuple[float, int]:
    import av
    from django.conf import settings

    from inference.predictors import predictor_get

    predictor = predictor_get(model)
    step = max(1, settings.PICTOR_INVOKE_BATCH)
    start = time.perf_counter()
    box = av.open(io.BytesIO(data), format="mov")
    stream = box.streams.video[0]
    stream.thread_type = "AUTO"
    duration = float(stream.duration * stream.time_base)
    times = [k / fps for k in range(int(duration * fps + 0.999999))]
    batch, frames, prev, k = [], 0, None, 0
    for frame in box.decode(stream):
        while prev is not None and k < len(times) and times[k] < frame.time:
            batch.append(prev.to_image())
            k += 1
        prev = frame
        if len(batch) >= step:
            frames += len(batch)
            if forward:
                predictor.predict(batch)
            batch = []
    while prev is not None and k < len(times):
        batch.append(prev.to_image())
        k += 1
    if batch:
        frames += len(batch)
        if forward:
            predictor.predict(batch)
    box.close()
    return time.perf_counter() - start, frames


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--memory-seconds", type=int, default=120)
    args = parser.parse_args()
    if not HYMENOPTERA.is_dir():
        print(f"hymenoptera_data not found at {HYMENOPTERA}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="pictor-bench-video-") as tmp:
        django_setup(Path(tmp), PICTOR_BACKBONES="lite0", PICTOR_API_RATE="10000000/min")
        from django.test import Client

        project, model, key = setup()
        data = make_video(args.seconds)
        client = Client(SERVER_NAME="localhost")
        # Warm-up: the predictor's sessions and the first decode pay their one-time costs here.
        api_run(client, project, key, data, 1)
        raw_run(model, data, 1, forward=True)

        rows = []
        for fps in args.fps:
            api, raw, dec = [], [], []
            for _ in range(args.repeats):
                t, n_api = api_run(client, project, key, data, fps)
                api.append(t)
                t, n_raw = raw_run(model, data, fps, forward=True)
                raw.append(t)
                t, _ = raw_run(model, data, fps, forward=False)
                dec.append(t)
            assert n_api == n_raw, (n_api, n_raw)
            a, r, d = statistics.median(api), statistics.median(raw), statistics.median(dec)
            rows.append((fps, n_api, a, n_api / a, r, n_raw / r, n_raw / d, a / r))

        # Peak RSS only grows: the short video (and every run above) set it; the long one may raise it.
        long_video = make_video(args.memory_seconds)
        api_run(client, project, key, data, 5)
        short_peak = peak_rss_mb()
        _, long_frames = api_run(client, project, key, long_video, 5)
        long_peak = peak_rss_mb()
        held_mb = args.memory_seconds * 30 * 640 * 360 * 3 / 2**20  # every decoded frame as RGB

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Video invoke: API against raw decode + forward",
        "",
        f"{args.seconds} s H.264 MP4, 640x360, 30 fps ({len(data) / 1e6:.1f} MB); quick model (lite0 + linear head); "
        f"median of {args.repeats}; {os.cpu_count()} CPUs, load {load:.1f}; Python {platform.python_version()}.",
        "",
        "| ?fps= | sampled frames | API s | API frames/s | raw decode+forward s | raw frames/s | decode-only frames/s | API / raw time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fps, n, a, af, r, rf, df, ratio in rows:
        lines.append(f"| {fps:g} | {n} | {a:.2f} | {af:.1f} | {r:.2f} | {rf:.1f} | {df:.1f} | {ratio:.2f} |")
    lines += [
        "",
        f"Memory (peak RSS of this process): {short_peak:.0f} MB after the {args.seconds} s video; "
        f"{long_peak:.0f} MB after a {args.memory_seconds} s one ({long_frames} frames at ?fps=5), "
        f"+{long_peak - short_peak:.0f} MB. Holding its decoded frames would take {held_mb:.0f} MB.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
