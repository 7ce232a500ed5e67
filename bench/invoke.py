"""Invoke latency and throughput through HTTP, against the raw forward pass of the same model.

    .venv/bin/python bench/invoke.py               # short: 200 sequential requests, 10 s at 8 and 50 clients
    .venv/bin/python bench/invoke.py --soak 60     # the benchmark report's run: 50 clients for 60 s
    .venv/bin/python bench/invoke.py --requests 500 --throughput-seconds 20

Standalone, loopback only. The bench process sets up Django on a temporary PICTOR_DATA_DIR (SQLite,
embedded file cache and broker: no PostgreSQL, no Redis), production mode (DEBUG off, a random
SECRET_KEY), PICTOR_BACKBONES=lite0; it ingests 10 ants + 10 bees from hymenoptera train, computes
their embeddings, trains and deploys the quick model (lite0 features + linear head) and creates an
invoke-scoped API key. Then it starts a real server on 127.0.0.1 — gunicorn with the production
settings of the Procfile/Dockerfile (2 workers x 4 threads, override with --workers/--threads) —
and measures, with hymenoptera val JPEGs (multipart `file`, one image per request):

* **Latency**: one client, requests one after another: p50/p99 of the whole HTTP round trip
  (connection reused, as a client library does).
* **Raw model, same run, same process as the client, interleaved with the requests** (each request
  is followed by the raw path on the same image, so both see the same machine load): the same
  quick model without the server:
  JPEG bytes → decode + preprocess (``training.ml.backbone.preprocess``: draft decode, resize,
  crop, scale) and the forward pass (onnxruntime lite0 on the preprocessed tensor, L2 norm, the
  linear head's softmax), each timed separately on the same images. **Overhead** = HTTP p50 − raw
  (decode + preprocess + forward) p50; target ≤ 10 ms. For context the server-side image
  validation (``labeling.images.validate_image``: checks, full decode, SHA-256), which the raw path
  skips, is timed too.
* **Throughput**: 8 concurrent clients for --throughput-seconds: requests/s and latency.
* **Soak**: 50 concurrent clients for --soak seconds: every status counted; a 5xx or a
  connection error fails the run (exit 1).

The per-key rate limit is raised (PICTOR_API_RATE) so the limiter measures nothing here; the
API key is still checked and its use counted on every request (two small SQLite writes). The
clients share the server's CPU cores (the machine may be shared too: load average is reported).
Results: printed as Markdown and written to bench/out/invoke.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from common import HYMENOPTERA, OUT_DIR, REPO

OUT = OUT_DIR / "invoke.md"
TARGET_OVERHEAD_MS = 10.0


def server_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(48),
        PICTOR_DATA_DIR=str(data_dir),
        PICTOR_BACKBONES="lite0",
        PICTOR_API_RATE="10000000/min",
    )
    return env


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


# ----------------------------------------------------------------------------- set-up


def setup_project(env: dict) -> tuple[str, str]:
    """Project with a deployed quick model; returns (project id, invoke API key)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from labeling import services as labeling
    from projects import keys
    from projects.services import project_create
    from training import runner
    from training import services as training
    from training.models import ModelVersion

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    project = project_create(name="Invoke bench", owner=user)
    items = [
        labeling.IngestItem(filename=p.name, data=p.read_bytes(), labels=[cls])
        for cls in ("ants", "bees")
        for p in sorted((HYMENOPTERA / "train" / cls).glob("*.jpg"))[:10]
    ]
    report = labeling.samples_ingest(project=project, items=items, user=user)
    assert report.accepted == 20, report
    training.embeddings_compute(project_id=project.pk)
    assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
    model = ModelVersion.objects.filter(project=project).order_by("-version").first()
    if not model.deployed:
        training.model_deploy(model=model)
    key = keys.api_key_create(project=project, name="bench", scope="invoke")[1]
    return str(project.pk), key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: dict,
    port: int,
    workers: int,
    threads: int,
    log: Path,
    *,
    app: str = "config.wsgi",
    cwd: Path = REPO,
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "120",
        *extra_args,
    ]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------- measurements


class Client:
    def __init__(self, url: str, key: str, images: list[tuple[str, bytes]]):
        import requests

        self.url, self.images = url, images
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def invoke(self, i: int) -> tuple[int, float, dict | None]:
        name, data = self.images[i % len(self.images)]
        t0 = time.perf_counter()
        r = self.session.post(self.url, files={"file": (name, data, "image/jpeg")}, timeout=120)
        elapsed = time.perf_counter() - t0
        return r.status_code, elapsed, (r.json() if r.status_code == 200 else None)


def concurrent(url: str, key: str, images, clients: int, seconds: float) -> dict:
    import requests

    stop = time.monotonic() + seconds
    lock = threading.Lock()
    statuses: Counter = Counter()
    latencies: list[float] = []
    errors: list[str] = []

    def run(n: int) -> None:
        client = Client(url, key, images)
        i = n
        while time.monotonic() < stop:
            try:
                status, elapsed, _ = client.invoke(i)
            except requests.RequestException as exc:
                with lock:
                    errors.append(repr(exc)[:200])
                continue
            finally:
                i += clients
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 180)
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "wall": wall,
        "statuses": statuses,
        "latencies": latencies,
        "errors": errors,
        "ok_per_s": statuses.get(200, 0) / wall,
    }


def latency(url: str, key: str, project_id: str, images: list[tuple[str, bytes]], n: int) -> dict:
    """One HTTP request, then the same image through the raw model in this process, n times.

    Interleaving puts both sides under the same machine load at the same moment (the machine may be
    shared); the raw path runs while the server is idle, and the server while the raw path is idle.
    """
    import numpy as np

    from labeling import images as imaging
    from labeling.services import image_limits
    from training.embedders import embedder_get
    from training.ml import backbone as bb
    from training.models import ModelVersion
    from training.quick import head_load

    model = ModelVersion.objects.get(project_id=project_id, deployed=True)
    assert model.features == "lite0", model.features
    embedder, head = embedder_get("lite0"), head_load(model)
    limits = image_limits()
    client = Client(url, key, images)

    def forward(batch):
        features = embedder.runner.run(batch)["features"]
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return head.predict_proba(features)

    for i in range(5):  # warm-up
        forward(bb.preprocess([images[i % len(images)][1]], embedder.resolution))
    out = {"http": [], "prep": [], "forward": [], "total": [], "validate": []}
    for i in range(n):
        data = images[i % len(images)][1]
        status, elapsed, body = client.invoke(i)
        assert status == 200 and body and body["label"] in ("ants", "bees"), (status, body)
        t0 = time.perf_counter()
        batch = bb.preprocess([data], embedder.resolution)
        t1 = time.perf_counter()
        probs = forward(batch)
        t2 = time.perf_counter()
        imaging.validate_image(data, limits=limits)
        t3 = time.perf_counter()
        assert probs.shape == (1, 2)
        out["http"].append(elapsed)
        out["prep"].append(t1 - t0)
        out["forward"].append(t2 - t1)
        out["total"].append(t2 - t0)
        out["validate"].append(t3 - t2)
    return out


# ----------------------------------------------------------------------------- report


def status_text(statuses: Counter) -> str:
    return ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items())) or "none"


def report(args, meta, raw, tput, soak, server_log_problems) -> str:
    p50_http, p99_http = percentile(raw["http"], 50), percentile(raw["http"], 99)
    p50_raw = percentile(raw["total"], 50)
    overhead = p50_http - p50_raw
    paired = percentile([h - r for h, r in zip(raw["http"], raw["total"])], 50)
    verdict = "met" if 1000 * overhead <= TARGET_OVERHEAD_MS else "MISSED"
    fivexx = sum(c for s, c in soak["statuses"].items() if s >= 500)
    lines = [
        "# Invoke: HTTP latency and throughput vs the raw forward pass",
        "",
        f"Quick model (lite0 features + linear head, 2 labels, trained on 20 hymenoptera images), one "
        f"hymenoptera val JPEG per request as multipart `file` ({meta['n_images']} different images, "
        f"{meta['mean_kb']:.0f} KB on average), invoke-scoped API key. Server: gunicorn {meta['gunicorn']} on "
        f"127.0.0.1, {args.workers} workers x {args.threads} threads, production settings (DEBUG off), SQLite, "
        f"embedded cache/broker, no Redis. {os.cpu_count()} CPU cores shared by server and clients, no GPU; "
        f"load average at start {meta['load']:.2f}. onnxruntime {meta['ort']}, Python {platform.python_version()}; "
        f"wall time {meta['wall']:.0f} s.",
        "",
        f"## Single-image latency (1 client, {len(raw['http'])} sequential requests, each followed by the raw model "
        "on the same image)",
        "",
        "| path | p50 ms | p99 ms |",
        "|---|---:|---:|",
        f"| HTTP `POST /api/v1/projects/{{id}}/invoke` (round trip) | {ms(p50_http)} | {ms(p99_http)} |",
        f"| raw: decode + preprocess (JPEG bytes → 224×224 tensor) | {ms(percentile(raw['prep'], 50))} | "
        f"{ms(percentile(raw['prep'], 99))} |",
        f"| raw: forward (onnxruntime lite0 + L2 norm + head softmax) | {ms(percentile(raw['forward'], 50))} | "
        f"{ms(percentile(raw['forward'], 99))} |",
        f"| raw: decode + preprocess + forward | {ms(p50_raw)} | {ms(percentile(raw['total'], 99))} |",
        f"| **overhead: HTTP − raw** (target ≤ {TARGET_OVERHEAD_MS:.0f} ms at p50: {verdict}) | **{ms(overhead)}** | |",
        f"| overhead, median of the per-request differences | {ms(paired)} | |",
        f"| for context: server-side `validate_image` (checks, full decode, SHA-256), part of the overhead | "
        f"{ms(percentile(raw['validate'], 50))} | {ms(percentile(raw['validate'], 99))} |",
        "",
        "## Throughput and load",
        "",
        "| run | clients | seconds | requests/s (200) | p50 ms | p99 ms | max ms | statuses | connection errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, run in (("throughput", tput), ("soak", soak)):
        lat = run["latencies"]
        lines.append(
            f"| {name} | {run['clients']} | {run['wall']:.0f} | {run['ok_per_s']:.1f} | {ms(percentile(lat, 50))} | "
            f"{ms(percentile(lat, 99))} | {ms(max(lat) if lat else float('nan'))} | {status_text(run['statuses'])} | "
            f"{len(run['errors'])} |"
        )
    lines += [
        "",
        f"Raw single-stream rate for comparison (1 / raw p50): {1 / p50_raw:.1f} images/s. "
        f"Soak: **{fivexx} responses 5xx**, {len(soak['errors'])} connection errors"
        + (f" (e.g. {soak['errors'][0]})" if soak["errors"] else "")
        + f"; server log: {server_log_problems or 'no errors, no worker timeouts'}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests for the latency run")
    parser.add_argument("--throughput-seconds", type=float, default=10.0, help="length of the 8-client run")
    parser.add_argument("--soak", type=float, default=10.0, help="length of the 50-client run, seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder (database, server log)")
    args = parser.parse_args()
    if not HYMENOPTERA.is_dir():
        sys.exit(f"hymenoptera_data not found at {HYMENOPTERA}; set PICTOR_DATASETS to the datasets folder")
    started = time.perf_counter()
    load = os.getloadavg()[0]
    images = [
        (p.name, p.read_bytes())
        for cls in ("ants", "bees")
        for p in sorted((HYMENOPTERA / "val" / cls).glob("*.jpg"))[:10]
    ]

    data_dir = Path(tempfile.mkdtemp(prefix="pictor-bench-invoke-"))
    env = server_env(data_dir)
    proc = None
    try:
        print("setting up: project, 20 labeled images, embeddings, quick model ...", file=sys.stderr, flush=True)
        project_id, key = setup_project(env)
        port = free_port()
        log = data_dir / "gunicorn.log"
        proc = start_server(env, port, args.workers, args.threads, log)
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api/v1/schema", proc)
        url = f"{base}/api/v1/projects/{project_id}/invoke"
        # Warm every worker (model load on the first request of each) and the connection.
        warm = concurrent(url, key, images, clients=2 * args.workers, seconds=3)
        print(f"latency: {args.requests} sequential requests, each with the raw model ...", file=sys.stderr, flush=True)
        raw = latency(url, key, project_id, images, args.requests)
        print(f"throughput: 8 clients, {args.throughput_seconds:.0f} s ...", file=sys.stderr, flush=True)
        tput = concurrent(url, key, images, clients=8, seconds=args.throughput_seconds)
        print(f"soak: 50 clients, {args.soak:.0f} s ...", file=sys.stderr, flush=True)
        soak = concurrent(url, key, images, clients=50, seconds=args.soak)
        stop_server(proc)
        text = log.read_text(errors="replace")
        problems = [
            f"{text.count(marker)}× {marker!r}"
            for marker in ("Traceback", "WORKER TIMEOUT", "Internal Server Error")
            if marker in text
        ]
        if warm["errors"] or any(s != 200 for s in warm["statuses"]):
            problems.append(
                f"warm-up statuses {status_text(warm['statuses'])}, {len(warm['errors'])} connection errors"
            )
        import gunicorn
        import onnxruntime

        meta = {
            "n_images": len(images),
            "mean_kb": sum(len(d) for _, d in images) / len(images) / 1024,
            "gunicorn": gunicorn.__version__,
            "ort": onnxruntime.__version__,
            "load": load,
            "wall": time.perf_counter() - started,
        }
        md = report(args, meta, raw, tput, soak, ", ".join(problems))
        if "Traceback" in text:
            first = text.index("Traceback")
            start = text.rfind("\n", 0, max(0, text.rfind("\n", 0, first) - 1)) + 1  # the line before it too
            md += "\nFirst error in the server log:\n\n```\n" + text[start : start + 4000].strip() + "\n```\n"
    finally:
        if proc is not None:
            stop_server(proc)
        if args.keep:
            print(f"kept {data_dir} (server log: gunicorn.log)", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(md)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(md)
    bad = sum(c for s, c in warm["statuses"].items() if s >= 500) + len(warm["errors"])
    bad += sum(c for s, c in soak["statuses"].items() if s >= 500) + len(soak["errors"])
    bad += sum(c for s, c in tput["statuses"].items() if s >= 500) + len(tput["errors"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
