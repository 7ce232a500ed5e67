"""Batch jobs: worker throughput against the raw forward pass, worker memory as the archive grows,
a million-key listing, and invoke over HTTP against the raw path, all in one run.

    .venv/bin/python bench/batch.py                       # a few minutes: the sizes below
    .venv/bin/python bench/batch.py --throughput-items 3000 --rss-small 10000 --rss-large 70000

Needs PostgreSQL (127.0.0.1:5432, user postgres: a fresh database `pictor_bench_batch` is made) and
Redis (db 13), as the workers on several machines would; Fashion-MNIST from Debian's
`dataset-fashion-mnist` (its 70k images are written as PNG files to a folder) and hymenoptera
(its val JPEGs, repeated, for photo sizes).

* **Throughput**: a folder batch of --throughput-items photos through 1, then 2 worker processes
  (`celery worker -Q batch --pool solo`, the deployed quick model: the default lite0+lite2 features
  unless the AutoML picked fewer), items/s per process from the first to the last result, against the
  raw path of the same model measured in this process on the same files: decode + preprocess +
  onnxruntime forward (+ head), 32 images per forward pass as the workers run them, and the forward
  alone on preprocessed tensors. Goal: >= 0.85 x raw per process.
* **Worker RSS**: peak resident memory (VmHWM) of one worker after a --rss-small and a --rss-large
  item batch of Fashion-MNIST PNGs (a pixels model, so the big run takes minutes): flat means the
  worker holds a chunk, never the archive.
* **Listing**: a synthetic listing of --listing keys chunked into rows by the listing service
  (nothing queued): Python heap peak (tracemalloc) for 1/10 of the keys and for all of them.
* **Invoke**: p50 over HTTP (gunicorn, 2 workers x 4 threads, the deployed default model, one
  client, sequential) against the raw decode + forward p50 of the same images in the same run; with
  the stdlib client (the goal row) and python-requests, and the HTTP floor (bench/echo_wsgi.py).

Prints a Markdown table and writes bench/out/batch.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import HYMENOPTERA, OUT_DIR, REPO

FASHION = Path("/usr/share/datasets/fashion-mnist")
PG = "postgres://postgres@127.0.0.1:5432"
# Overridable so that two bench runs on one machine never share a database.
DB_NAME = os.environ.get("BENCH_DB_NAME", "pictor_bench_batch")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
OUT = OUT_DIR / "batch.md"
INFER = 32
IDLE = 0.03  # seconds between an invoke's answer and the raw path (see invoke_latency)
CHUNK = 128


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fresh_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG.replace('postgres://', 'postgresql://')}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DB_NAME],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def base_env(data_dir: Path, roots: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "DEBUG")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
        DATABASE_URL=f"{PG}/{DB_NAME}",
        REDIS_URL=REDIS,
        PICTOR_DATA_DIR=str(data_dir),
        PICTOR_IMPORT_ROOTS=roots,
        PICTOR_API_RATE="10000000/min",
        PICTOR_BATCH_INFER=str(INFER),
        # Smaller chunks than the default 256 so that a few thousand items spread over two workers.
        PICTOR_BATCH_CHUNK=str(CHUNK),
    )
    return env


# ----------------------------------------------------------------------------- data


def fashion_pngs(folder: Path, n: int) -> list[Path]:
    """The first n of Fashion-MNIST's 70k (train then test) as 28x28 PNG files."""
    import numpy as np
    from PIL import Image

    if not FASHION.is_dir():
        raise SystemExit(f"{FASHION} missing: apt-get install -y dataset-fashion-mnist")
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for part in ("train", "t10k"):
        with gzip.open(FASHION / f"{part}-images-idx3-ubyte.gz", "rb") as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        for img in raw:
            if len(paths) >= n:
                return paths
            path = folder / f"{len(paths) // 1000:03d}" / f"{len(paths):06d}.png"
            if len(paths) % 1000 == 0:
                path.parent.mkdir(exist_ok=True)
            Image.fromarray(img).save(path, compress_level=1)
            paths.append(path)
    return paths


def photo_folder(folder: Path, n: int) -> list[Path]:
    """n photo-sized JPEGs: hymenoptera val, repeated (hard links)."""
    source = sorted((HYMENOPTERA / "val").glob("*/*.jpg"))
    if not source:
        raise SystemExit(f"hymenoptera not found under {HYMENOPTERA}; set PICTOR_DATASETS")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        os.link(source[i % len(source)], path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- Django side


def setup_models():
    """A project with the default quick model (lite0+lite2 candidates) and one with a pixels model."""
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling import services as labeling
    from projects import keys
    from projects.services import project_create
    from training import runner
    from training import services as training
    from training.models import ModelVersion

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    out = {}
    for name, backbones in (("default", ["lite0", "lite2"]), ("pixels", ["pixels"])):
        settings.PICTOR_BACKBONES = backbones
        project = project_create(name=f"Batch bench {name}", owner=user)
        items = [
            labeling.IngestItem(filename=p.name, data=p.read_bytes(), labels=[cls])
            for cls in ("ants", "bees")
            for p in sorted((HYMENOPTERA / "train" / cls).glob("*.jpg"))[:10]
        ]
        assert labeling.samples_ingest(project=project, items=items, user=user).accepted == 20
        training.embeddings_compute(project_id=project.pk)
        assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
        model = ModelVersion.objects.get(project=project, deployed=True)
        out[name] = (project, model)
    key = keys.api_key_create(project=out["default"][0], name="bench", scope="invoke")[1]
    return user, out, key


def raw_rate(model, paths: list[Path], *, rounds: int = 2, threads: int | None = None) -> dict:
    """The same model without Pictor, in this process: bytes → preprocess → forward (+ head), 32 per
    pass; `threads`: onnxruntime threads per session (None: all cores, as a lone worker has)."""
    import numpy as np
    from django.conf import settings

    from training.embedders import embedder_get
    from training.ml import backbone as bb
    from training.ml.features import FeatureKey
    from training.ml.heads import concat_features
    from training.quick import head_load

    parts = list(FeatureKey.parse(model.features))
    embedders = [
        bb.Embedder(p, cache_dir=settings.MODEL_CACHE_DIR, threads=threads)
        if threads and p != "pixels"
        else embedder_get(p)
        for p in parts
    ]
    head = head_load(model)
    datas = [p.read_bytes() for p in paths]

    def forward(tensors):
        feats = []
        for e, t in zip(embedders, tensors):
            if t is None:  # the pixels feature has no graph
                feats.append(e.embed(batch_data))
                continue
            f = e.runner.run(t)["features"]
            feats.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
        return head.predict_proba(concat_features(feats) if len(feats) > 1 else feats[0])

    def prep(batch):
        return [bb.preprocess(batch, e.resolution) if hasattr(e, "runner") else None for e in embedders]

    batch_data = datas[:INFER]
    forward(prep(batch_data))  # warm-up
    total = fwd = 0.0
    n = 0
    for _ in range(rounds):
        for start in range(0, len(datas), INFER):
            batch_data = datas[start : start + INFER]
            t0 = time.perf_counter()
            tensors = prep(batch_data)
            t1 = time.perf_counter()
            forward(tensors)
            t2 = time.perf_counter()
            total += t2 - t0
            fwd += t2 - t1
            n += len(batch_data)
    return {"total": n / total, "forward": n / fwd, "features": model.features}


def start_workers(env: dict, count: int, log_dir: Path, tag: str) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        log = log_dir / f"worker-{tag}-{i}.log"
        procs.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    "batch",
                    "--pool",
                    "solo",
                    "-n",
                    f"bench-{tag}-{i}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=REPO,
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_batch(project, folder: Path, workers: list[subprocess.Popen], expected: int, timeout: float) -> dict:
    """Start a folder batch, wait for it, return items/s between the first and the last result."""
    from batches import services
    from batches.models import Batch, BatchResult

    batch = services.batch_start(project=project, source={"kind": "folder", "path": str(folder)})
    deadline = time.monotonic() + timeout
    first = None
    while True:
        b = Batch.objects.get(pk=batch.pk)
        # Result rows appear a forward pass (32 items) at a time; the counters only per chunk.
        processed = BatchResult.objects.filter(batch=b).count()
        now = time.monotonic()
        if first is None and processed:
            first = (now, processed)
        if b.status in Batch.FINAL:
            break
        if now > deadline:
            raise RuntimeError(f"batch not done in {timeout:.0f} s: {processed}/{b.total}")
        for w in workers:
            if w.poll() is not None:
                raise RuntimeError(f"a worker exited with {w.returncode}")
        time.sleep(0.25)
    end = time.monotonic()
    assert b.status == "succeeded" and b.total == expected, (b.status, b.total, b.error)
    assert BatchResult.objects.filter(batch=b).count() == expected
    t0, n0 = first
    return {"rate": (processed - n0) / max(end - t0, 1e-9), "failed": b.failed, "seconds": end - t0}


def listing_memory(project, model, keys: int) -> dict:
    """Chunk a synthetic listing of `keys` keys into rows (nothing queued); heap peak and time."""
    import tracemalloc

    from batches import pipeline, services
    from batches.models import Batch, BatchChunk

    batch = Batch.objects.create(
        project=project, source_kind="folder", source_ref="/synthetic", model=model, model_version=model.version
    )
    real = pipeline.chunks_ready
    pipeline.chunks_ready = lambda **kw: None
    try:
        tracemalloc.start()
        t0 = time.perf_counter()
        services.batch_listing_run(batch_id=batch.pk, listing=([f"synthetic/{i:08d}.png"] for i in range(keys)))
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        pipeline.chunks_ready = real
    batch.refresh_from_db()
    assert batch.total == keys and batch.listed, (batch.total, keys)
    chunks = BatchChunk.objects.filter(batch=batch).count()
    BatchChunk.objects.filter(batch=batch).delete()
    return {"peak_mb": peak / 2**20, "seconds": seconds, "chunks": chunks}


def raw_invoke_path(model):
    """The raw decode + preprocess + forward + head of ``model`` for one encoded image.

    One decode (JPEG DCT scaling to the largest crop), every backbone resizing from it: the best
    the server can do, so the overhead is not flattered by a second decode here.
    """
    import numpy as np

    from training.embedders import embedder_get
    from training.ml import backbone as bb
    from training.ml.features import FeatureKey
    from training.ml.heads import concat_features
    from training.quick import head_load

    embedders = [embedder_get(p) for p in FeatureKey.parse(model.features)]
    head = head_load(model)
    side = bb.crop_size_for(max(spec.resolution for spec in bb.BACKBONES.values()))

    def raw(data: bytes):
        img = bb.load_image(data, min_size=side)
        feats = []
        for e in embedders:
            if not hasattr(e, "runner"):
                feats.append(e.embed([img]))
                continue
            f = e.runner.run(bb.preprocess([img], e.resolution))["features"]
            feats.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
        return head.predict_proba(concat_features(feats) if len(feats) > 1 else feats[0])

    return raw


class StdlibClient:
    """A keep-alive HTTP/1.1 client on the standard library that builds each multipart body per request.

    Why not python-requests for the goal row: against a server that does nothing (bench/echo_wsgi.py on
    the same gunicorn) requests' round trip is ~1 ms longer than this one's, client-side work that no
    server change can remove. Both are measured; the table says which is which.
    """

    def __init__(self, url: str, key: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.key = key

    def post_file(self, name: str, data: bytes) -> tuple[int, bytes]:
        import uuid

        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        body = b"".join([head, data, f"\r\n--{boundary}--\r\n".encode()])
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {self.key}"}
        self.conn.request("POST", self.path, body, headers)
        response = self.conn.getresponse()
        return response.status, response.read()


class RequestsClient:
    def __init__(self, url: str, key: str) -> None:
        import requests

        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def post_file(self, name: str, data: bytes) -> tuple[int, bytes]:
        r = self.session.post(self.url, files={"file": (name, data, "image/jpeg")}, timeout=120)
        return r.status_code, r.content


def timed_invokes(
    url: str, key: str, images: list[tuple[str, bytes]], raw, n: int, client: str = "stdlib"
) -> tuple[list, list]:
    """``n`` sequential multipart invokes (after 5 warm-up ones), each followed by the raw path on
    the same image (when ``raw`` is given), so both see the same load. Returns (HTTP seconds, raw
    seconds)."""
    http_client = (StdlibClient if client == "stdlib" else RequestsClient)(url, key)
    http, rawt = [], []
    for i in range(n + 5):
        name, data = images[i % len(images)]
        t0 = time.perf_counter()
        status, body = http_client.post_file(name, data)
        t1 = time.perf_counter()
        assert status == 200, body[:300]
        # The server counts the key's use after answering: let that finish first, so the raw
        # path below never shares the cores with it (it would slow raw, flattering the server).
        time.sleep(IDLE)
        t2 = time.perf_counter()
        if raw is not None:
            raw(data)
        t3 = time.perf_counter()
        if i >= 5:  # the first requests load the model in each gunicorn worker
            http.append(t1 - t0)
            rawt.append(t3 - t2)
    return http, rawt


def invoke_latency(env: dict, project, model, key: str, n: int, log_dir: Path) -> dict:
    """Sequential invokes over HTTP, each followed by the raw path on the same image (same load); with
    the stdlib client (the goal row) and with python-requests, and the HTTP floor: the stdlib client
    against bench/echo_wsgi.py on the same gunicorn settings."""
    sys.path.insert(0, str(REPO / "bench"))
    from invoke import free_port, start_server, stop_server, wait_ready

    images = [(p.name, p.read_bytes()) for p in sorted((HYMENOPTERA / "val").glob("*/*.jpg"))]
    raw = raw_invoke_path(model)
    out: dict = {}
    port = free_port()
    server = start_server(env, port, 2, 4, log_dir / "gunicorn.log")
    url = f"http://127.0.0.1:{port}/api/v1/projects/{project.pk}/invoke"
    try:
        wait_ready(f"http://127.0.0.1:{port}/accounts/login/", server)
        for client in ("stdlib", "requests"):
            http, rawt = timed_invokes(url, key, images, raw, n, client=client)
            out[client] = {
                "http_p50": percentile(http, 50),
                "raw_p50": percentile(rawt, 50),
                "http_p99": percentile(http, 99),
                "raw_p99": percentile(rawt, 99),
                "n": len(http),
            }
    finally:
        stop_server(server)
    port = free_port()
    floor = start_server(env, port, 2, 4, log_dir / "echo.log", app="echo_wsgi:app", cwd=REPO / "bench")
    try:
        wait_ready(f"http://127.0.0.1:{port}/", floor)
        http, _ = timed_invokes(f"http://127.0.0.1:{port}/", key, images, None, n)
        out["floor_p50"] = percentile(http, 50)
    finally:
        stop_server(floor)
    return out


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--throughput-items", type=int, default=1000, help="photos per throughput batch")
    parser.add_argument("--rss-small", type=int, default=10_000)
    parser.add_argument("--rss-large", type=int, default=70_000)
    parser.add_argument("--listing", type=int, default=1_000_000)
    parser.add_argument("--invoke-requests", type=int, default=100)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: throughput, rss, listing, invoke"
    )
    args = parser.parse_args()
    args.skip = {p.strip() for p in args.skip.split(",") if p.strip()}

    tmp = Path(tempfile.mkdtemp(prefix="pictor-bench-batch-"))
    data_dir, src = tmp / "data", tmp / "sources"
    data_dir.mkdir()
    print(f"data in {tmp}", file=sys.stderr, flush=True)
    fresh_database()
    env = base_env(data_dir, str(src))
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print("models: default (lite0+lite2 candidates) and pixels ...", file=sys.stderr, flush=True)
    _, models, key = setup_models()
    project, model = models["default"]
    pixel_project, pixel_model = models["pixels"]
    print("writing sources ...", file=sys.stderr, flush=True)
    photos = photo_folder(src / "photos", args.throughput_items)
    fashion = fashion_pngs(src / "fashion", 0 if "rss" in args.skip else max(args.rss_small, args.rss_large))
    small = src / "fashion-small"
    small.mkdir()
    for p in fashion[: args.rss_small]:
        (small / p.parent.name).mkdir(exist_ok=True)
        os.link(p, small / p.parent.name / p.name)
    rows = []
    worker_env = {**env, "PICTOR_BACKBONES": "lite0,lite2"}

    print("raw path ...", file=sys.stderr, flush=True)
    raw = raw_rate(model, photos[: min(len(photos), 256)])
    raw1 = raw_rate(model, photos[: min(len(photos), 256)], threads=1)
    # (workers, onnxruntime threads per worker: 0 = all cores). Two workers with all cores each
    # oversubscribe a small machine; cores / workers is what PICTOR_ONNX_THREADS is for.
    runs = [(1, 0), (2, 0), (2, max(1, (os.cpu_count() or 2) // 2))]
    tput = {}
    for count, threads in runs if "throughput" not in args.skip else []:
        print(f"throughput with {count} worker(s), threads {threads or 'all'} ...", file=sys.stderr, flush=True)
        workers = start_workers({**worker_env, "PICTOR_ONNX_THREADS": str(threads)}, count, tmp, f"t{count}-{threads}")
        try:
            time.sleep(8)  # start-up (imports) outside the measurement
            tput[count, threads] = run_batch(project, src / "photos", workers, len(photos), timeout=3600)
        finally:
            stop_workers(workers)
        again = raw_rate(model, photos[: min(len(photos), 128)], rounds=1, threads=threads or None)
        tput[count, threads]["raw_after"] = again["total"]
    raw_ref = {0: statistics.mean([raw["total"]] + [t["raw_after"] for (_, th), t in tput.items() if not th])}
    for (_count, th), t in tput.items():
        if th:
            raw_ref[th] = statistics.mean([raw1["total"], t["raw_after"]])

    rss = {}
    for label, folder, n in (
        (("small", small, args.rss_small), ("large", src / "fashion", args.rss_large))
        if ("rss" not in args.skip)
        else ()
    ):
        print(f"worker RSS over {n} items ...", file=sys.stderr, flush=True)
        workers = start_workers({**env, "PICTOR_BACKBONES": "pixels"}, 1, tmp, f"rss-{label}")
        try:
            time.sleep(8)
            result = run_batch(pixel_project, folder, workers, n, timeout=7200)
            rss[label] = (n, peak_rss_mb(workers[0].pid), result["rate"])
        finally:
            stop_workers(workers)

    if "listing" not in args.skip:
        print("listing ...", file=sys.stderr, flush=True)
        listing_small = listing_memory(pixel_project, pixel_model, max(1, args.listing // 10))
        listing_large = listing_memory(pixel_project, pixel_model, args.listing)
    if "invoke" not in args.skip:
        print("invoke over HTTP ...", file=sys.stderr, flush=True)
        inv = invoke_latency({**env, "PICTOR_BACKBONES": "lite0,lite2"}, project, model, key, args.invoke_requests, tmp)

    load = os.getloadavg()
    rows += [
        "# Batch jobs: throughput, memory, listing, invoke",
        "",
        f"Model: quick head on `{model.features}` (the AutoML's pick among lite0, lite2 and lite0+lite2); "
        f"{INFER} images per forward pass, {CHUNK} per chunk; {os.cpu_count()} cores, load average {load[0]:.1f} at the end "
        "(the machine is shared: raw and workers measured in the same run).",
        "",
        "| measurement | value | against | ratio |",
        "|---|---|---|---|",
        f"| raw: decode + preprocess + forward, this process, all cores | {raw['total']:.1f} img/s | | |",
        f"| raw: the same with 1 onnxruntime thread | {raw1['total']:.1f} img/s | | |",
        f"| raw: forward only (preprocessed tensors), all cores | {raw['forward']:.1f} img/s | | |",
    ]
    for (count, threads), t in tput.items():
        per, ref = t["rate"] / count, raw_ref[threads]
        rows.append(
            f"| {count} worker process{'es' if count > 1 else ''} ({'all cores' if not threads else f'{threads} thread'} "
            f"each): {len(photos)} photos | {t['rate']:.1f} img/s ({per:.1f} per process) | raw "
            f"{'all cores' if not threads else f'{threads} thread'} {ref:.1f} img/s (mean over the run) | "
            f"**{per / ref:.2f}** per process (goal >= 0.85) |"
        )
    if rss:
        (n_s, rss_s, rate_s), (n_l, rss_l, rate_l) = rss["small"], rss["large"]
        rows += [
            f"| worker peak RSS, {n_s:,} Fashion-MNIST PNGs (pixels model, {rate_s:.0f} img/s) | {rss_s:.0f} MB | | |",
            f"| worker peak RSS, {n_l:,} Fashion-MNIST PNGs ({rate_l:.0f} img/s) | {rss_l:.0f} MB | {rss_s:.0f} MB at "
            f"{n_s:,} | **{rss_l / rss_s:.2f}** |",
        ]
    if "listing" not in args.skip:
        rows += [
            f"| listing {args.listing // 10:,} synthetic keys: heap peak | {listing_small['peak_mb']:.1f} MB "
            f"({listing_small['chunks']} chunks, {listing_small['seconds']:.1f} s) | | |",
            f"| listing {args.listing:,} synthetic keys: heap peak | {listing_large['peak_mb']:.1f} MB "
            f"({listing_large['chunks']} chunks, {listing_large['seconds']:.1f} s) | {listing_small['peak_mb']:.1f} MB "
            f"at 1/10 | **{listing_large['peak_mb'] / max(listing_small['peak_mb'], 1e-9):.2f}** |",
        ]
    if "invoke" not in args.skip:
        for client, label in (("stdlib", "stdlib http.client"), ("requests", "python-requests")):
            r = inv[client]
            goal = " (goal <= 5 ms)" if client == "stdlib" else ""
            rows.append(
                f"| invoke p50 over HTTP (gunicorn 2x4, {r['n']} sequential, client: {label}) | "
                f"{r['http_p50'] * 1000:.1f} ms (p99 {r['http_p99'] * 1000:.1f} ms) | raw decode + forward p50 "
                f"{r['raw_p50'] * 1000:.1f} ms (p99 {r['raw_p99'] * 1000:.1f} ms), same run | "
                f"**{(r['http_p50'] - r['raw_p50']) * 1000:+.1f} ms**{goal} |"
            )
        rows.append(
            f"| HTTP floor: the stdlib client against a WSGI app that only reads the body (bench/echo_wsgi.py, "
            f"gunicorn 2x4) | {inv['floor_p50'] * 1000:.2f} ms | | |"
        )
    md = "\n".join(rows) + "\n"
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    OUT.write_text(md)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
