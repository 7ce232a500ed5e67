"""Peak RSS of one web worker for a maximum-size request: a 64-image invoke and a 500-entry zip upload.

Each scenario runs in a fresh process (Django on the embedded default, requests through the test
client, as one gunicorn worker would serve them): its peak RSS (ru_maxrss) is compared with its RSS
after a warm-up request, and with the stated bound. Exit status 1 if a bound is exceeded.

    .venv/bin/python bench/memory.py            # both scenarios
    .venv/bin/python bench/memory.py invoke     # one
"""

from __future__ import annotations

import base64
import io
import json
import resource
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import common

# Growth of peak RSS over the warmed-up worker. Measured on this machine: invoke of 64 x 6 MP
# JPEGs (a ~90 MB JSON body, held as bytes, text and parsed base64) +3.1 GB with the whole request
# decoded at once (PICTOR_INVOKE_BATCH=64), about +0.8 GB at the default batch of 8. The zip
# (500 x 1024x768 JPEG, ~100 MB) is read into memory once; its entries are decompressed and decoded
# one at a time: about +0.2 GB.
BOUNDS_MB = {"invoke": 1200, "zip": 400}
INVOKE_ITEMS = 64
ZIP_ENTRIES = 500


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return _rss_mb()


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size)  # smooth: realistic JPEG sizes
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _setup():
    data = Path(tempfile.mkdtemp(prefix="pictor-bench-memory-"))
    common.django_setup(data, PICTOR_BACKBONES="lite0")
    from django.conf import settings
    from rest_framework.test import APIClient

    from projects.tests.factories import MembershipFactory, ProjectFactory, UserFactory

    settings.ALLOWED_HOSTS = ["*"]
    project = ProjectFactory(name="bench")
    user = UserFactory(username="bench")
    MembershipFactory(project=project, user=user, role="owner")
    client = APIClient()
    client.force_authenticate(user)
    return project, client


def run_invoke() -> dict:
    project, client = _setup()
    from training.tests.factories import make_model

    make_model(project, mode="quick", deployed=True)
    images = [_jpeg(i, (3000, 2000)) for i in range(8)]
    url = f"/api/v1/projects/{project.pk}/invoke"
    # One batch's worth first: onnxruntime's arena grows once to the batch's size and is reused.
    warm = client.post(url, {"items": [{"data": base64.b64encode(b).decode()} for b in images]}, format="json")
    assert warm.status_code == 200, warm.content[:300]
    body = {"items": [{"data": base64.b64encode(images[i % 8]).decode()} for i in range(INVOKE_ITEMS)]}
    before = _current_rss_mb()
    r = client.post(url, body, format="json")
    assert r.status_code == 200, r.content[:300]
    assert len(r.json()["results"]) == INVOKE_ITEMS
    return {"before_mb": before, "peak_mb": _rss_mb()}


def run_zip() -> dict:
    project, client = _setup()
    url = f"/api/v1/projects/{project.pk}/samples"
    # Labeled, so the warm-up also pays the one-time imports a label brings (training.quick: ~450 MB).
    warm = client.post(url, {"file": [io.BytesIO(_jpeg(10_000, (640, 480)))], "label": ["ants"]}, format="multipart")
    assert warm.status_code == 201, warm.content[:300]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(ZIP_ENTRIES):
            zf.writestr(f"{'ants' if i % 2 else 'bees'}/{i}.jpg", _jpeg(i, (1024, 768)))
    data = buf.getvalue()
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    upload = io.BytesIO(data)
    upload.name = "bench.zip"
    body = encode_multipart(BOUNDARY, {"file": [upload]})  # the client's body, built before measuring
    del buf, upload
    before = _current_rss_mb()
    r = client.generic("POST", url, body, content_type=MULTIPART_CONTENT)
    assert r.status_code == 201, r.content[:300]
    assert len(r.json()["samples"]) == ZIP_ENTRIES
    return {"before_mb": before, "peak_mb": _rss_mb(), "zip_mb": len(data) / 1024**2}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--child":
        print(json.dumps({"invoke": run_invoke, "zip": run_zip}[argv[1]]()))
        return 0
    failed = 0
    for name in argv or list(BOUNDS_MB):
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: FAILED\n{out.stderr[-3000:]}")
            failed += 1
            continue
        m = json.loads(out.stdout.strip().splitlines()[-1])
        growth = m["peak_mb"] - m["before_mb"]
        ok = growth <= BOUNDS_MB[name]
        failed += not ok
        extra = f", zip {m['zip_mb']:.0f} MB" if "zip_mb" in m else ""
        print(
            f"{name}: peak RSS {m['peak_mb']:.0f} MB, {growth:+.0f} MB over the warmed-up worker "
            f"(bound {BOUNDS_MB[name]} MB{extra}) {'OK' if ok else 'OVER'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
