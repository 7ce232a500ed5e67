"""Where one invoke request's time goes, server-side: the deployed default quick model (lite0+lite2)
on PostgreSQL + Redis with production settings (DEBUG off), requests through Django's test client
(the whole middleware, DRF auth, throttle, parsing, validation, predictor and rendering; no socket).

    .venv/bin/python bench/invoke_profile.py                # 60 requests, a stage table
    .venv/bin/python bench/invoke_profile.py --cprofile 40  # and cProfile's top functions
    .venv/bin/python bench/invoke_profile.py --http 100     # and the client's round trip against
                                                            # gunicorn's request time (2x4)
    .venv/bin/python bench/invoke_profile.py --http 100 --server-onnx-threads 1

Stages are timed by wrapping the functions each one calls (the wrapper costs microseconds) and
counting SQL queries per request; "rest" is the request total minus the timed stages (the total
leaves out the response's close, which a server runs after sending the answer). The raw
decode + forward of the same image runs after each request, as in bench/batch.py. Needs PostgreSQL
(a fresh database, BENCH_DB_NAME, default pictor_bench_profile) and Redis (BENCH_REDIS_URL, db 14).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import HYMENOPTERA

import batch

AFTER = "key usage count writes (now at the response close, after the answer)"
CLOSE = "response close"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--cprofile", type=int, default=0, help="also profile this many requests")
    parser.add_argument("--http", type=int, default=0, help="also this many requests over gunicorn (2x4)")
    parser.add_argument(
        "--server-onnx-threads", type=int, default=0, help="PICTOR_ONNX_THREADS for gunicorn (0: all cores)"
    )
    args = parser.parse_args()

    batch.DB_NAME = os.environ.get("BENCH_DB_NAME", "pictor_bench_profile")
    batch.REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    tmp = Path(tempfile.mkdtemp(prefix="pictor-bench-profile-"))
    (tmp / "data").mkdir()
    batch.fresh_database()
    env = batch.base_env(tmp / "data", str(tmp / "sources"))
    os.environ.update(env, SECRET_KEY=secrets.token_urlsafe(48))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    _, models, key = batch.setup_models()
    settings.PICTOR_BACKBONES = ["lite0", "lite2"]
    project, model = models["default"]

    from inference import predictors, services
    from labeling import images as images_mod
    from projects import api_auth, keys
    from training.ml import backbone as bb

    timings: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                current[label] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(api_auth.ProjectKeyAuthentication, "authenticate", "auth (key lookup + usage count)")
    timed(keys, "api_key_record_use", AFTER)
    from django.http.response import HttpResponseBase

    timed(HttpResponseBase, "close", CLOSE)
    timed(services, "model_for_invoke", "model lookup")
    timed(services, "items_validate", "validate (decode + checks + sha256)")
    timed(images_mod, "validate_image", "  of which: validate_image")
    timed(predictors, "predict", "predict (preprocess + forward + head)")
    timed(bb, "preprocess", "  of which: preprocess (resize + crop)")
    timed(bb.OnnxRunner, "run", "  of which: onnxruntime run")
    from inference import throttles

    timed(throttles.KeyRateThrottle, "allow_request", "throttle")
    from inference import api as api_mod

    timed(api_mod.io, "invoke_files", "parse upload (multipart)")
    timed(api_mod, "_answer", "render answer")

    files = [(p.name, p.read_bytes()) for p in sorted((HYMENOPTERA / "val").glob("*/*.jpg"))]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    url = f"/api/v1/projects/{project.pk}/invoke"
    raw = batch.raw_invoke_path(model)

    def one(i: int) -> tuple[float, int, list[str]]:
        from django.core.files.uploadedfile import SimpleUploadedFile

        name, data = files[i % len(files)]
        upload = SimpleUploadedFile(name, data, content_type="image/jpeg")
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            r = client.post(url, {"file": upload})
            total = time.perf_counter() - t0
        assert r.status_code == 200, r.content[:300]
        return total, len(q.captured_queries), [x["sql"][:90] for x in q.captured_queries]

    for i in range(5):  # warm-up: model load
        one(i)
    totals, queries, rawt = [], [], []
    sqls = []
    for i in range(args.requests):
        current.clear()
        total, nq, sql = one(i)
        stages = dict(current)
        t1 = time.perf_counter()
        raw(files[i % len(files)][1])
        rawt.append(time.perf_counter() - t1)
        # The test client closes the response inside post(): take out what a server does after the answer.
        totals.append(total - stages.get(CLOSE, 0.0))
        queries.append(nq)
        sqls = sql
        for label, v in stages.items():
            timings[label].append(v)
    p = batch.percentile
    print(f"\n{args.requests} requests through the test client, median per stage (ms):\n")
    print("| stage | p50 ms |\n|---|---|")
    top = 0.0
    for label, values in timings.items():
        med = p(values, 50) * 1000
        if label in (AFTER, CLOSE):
            continue
        if not label.startswith("  "):
            top += med
        print(f"| {label} | {med:.2f} |")
    print(f"| rest (middleware, DRF, serializers, view) | {p(totals, 50) * 1000 - top:.2f} |")
    print(f"| **request total** | **{p(totals, 50) * 1000:.2f}** (p99 {p(totals, 99) * 1000:.2f}) |")
    print(f"| raw decode + forward, same images | {p(rawt, 50) * 1000:.2f} |")
    print(f"| {AFTER} | {p(timings[AFTER], 50) * 1000:.2f} |")
    print(f"| SQL queries per request | {p(queries, 50):.0f} |")
    print("\nqueries of the last request:\n" + "\n".join(f"  {s}" for s in sqls))

    if args.cprofile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(args.cprofile):
            one(i)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    if args.http:
        http_split(
            {**env, "PICTOR_ONNX_THREADS": str(args.server_onnx_threads)}, project, key, files, raw, args.http, tmp
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def http_split(env: dict, project, key: str, files: list, raw, n: int, tmp: Path) -> None:
    """Client round trip against gunicorn's own request time (access log %(D)s, microseconds)."""
    from invoke import free_port, start_server, stop_server, wait_ready

    port = free_port()
    log = tmp / "access.log"
    server = start_server(
        {**env, "PICTOR_BACKBONES": "lite0,lite2"},
        port,
        2,
        4,
        tmp / "g.out",
        extra_args=("--access-logfile", str(log), "--access-logformat", "%(D)s %(U)s"),
    )
    url = f"http://127.0.0.1:{port}/api/v1/projects/{project.pk}/invoke"
    try:
        wait_ready(f"http://127.0.0.1:{port}/accounts/login/", server)
        client, rawt = batch.timed_invokes(url, key, files, raw, n)
    finally:
        stop_server(server)
    server_t = [int(line.split()[0]) / 1e6 for line in log.read_text().splitlines() if "/invoke" in line]
    p = batch.percentile
    server_t = server_t[5:]  # the warm-up requests (timed_invokes leaves them out of its lists)
    threads = env.get("PICTOR_ONNX_THREADS", "0")
    print(f"\nover HTTP, {n} requests (gunicorn 2x4, onnxruntime threads {threads if threads != '0' else 'all'}):\n")
    print("| | p50 | p99 |\n|---|---|---|")
    for label, v in (("client round trip", client), ("gunicorn request time", server_t), ("raw", rawt)):
        print(f"| {label} | {p(v, 50) * 1000:.2f} | {p(v, 99) * 1000:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
