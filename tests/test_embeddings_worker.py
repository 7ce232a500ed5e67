"""Upload through the API → samples_added → embeddings_schedule → a REAL Celery worker on Redis → rows.

The worker is a separate process, so it must see what this test wrote: the test runs in
transaction mode (rows are committed), the worker's DATABASE_URL points at pytest-django's test
database, and both processes store media under the same PICTOR_DATA_DIR.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from conftest import datasets_dir
from tests.procs import BIN, clean_env, start, stop

HYM = datasets_dir() / "hymenoptera_data"
BACKBONES = ["lite0", "lite2"]


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL: a worker process cannot share pytest's SQLite test database")
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _redis_url() -> str:
    import os

    import redis

    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs Redis: REDIS_URL is not set (scripts/test.sh sets it when Redis answers)")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs Redis: {url} does not answer ({exc})")
    return url


def _images(n_per_class: int) -> list[tuple[str, bytes]]:
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}; set PICTOR_DATASETS to the datasets folder")
    return [
        (path.name, path.read_bytes())
        for cls in ("ants", "bees")
        for path in sorted((HYM / "train" / cls).glob("*.jpg"))[:n_per_class]
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uploaded_images_are_embedded_by_a_real_worker_over_redis(team, settings, tmp_path):
    from training.models import Embedding
    from training.selectors import embedding_progress

    redis_url = _redis_url()
    database_url = _database_url()
    images = _images(3)

    # One data folder for both processes: settings derive MEDIA_ROOT = PICTOR_DATA_DIR/media and
    # MODEL_CACHE_DIR = PICTOR_DATA_DIR/model-cache, so point this process's storage there too.
    data_dir = tmp_path / "data"
    media = data_dir / "media"
    media.mkdir(parents=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}},
    }
    settings.MODEL_CACHE_DIR = data_dir / "model-cache"
    settings.PICTOR_BACKBONES = BACKBONES  # what the worker uses by default

    env = clean_env(
        PICTOR_DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="w" * 40,
        PICTOR_BACKBONES=",".join(BACKBONES),
        PICTOR_EMBED_BATCH="4",  # several batches for six images
    )
    log = tmp_path / "worker.log"
    worker = start(
        [
            str(BIN / "celery"), "-A", "config", "worker", "-Q", "embeddings", "-c", "1",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ],
        env=env,
        log=log,
    )
    try:
        api = APIClient()
        api.force_authenticate(team.user("labeler"))
        files = [SimpleUploadedFile(name, data, content_type="image/jpeg") for name, data in images]
        r = api.post(f"/api/v1/projects/{team.project.pk}/samples", {"file": files}, format="multipart")
        assert r.status_code == 201, r.content
        sample_ids = {s["id"] for s in r.json()["samples"]}
        assert len(sample_ids) == len(images)
        assert all((media / f"projects/{team.project.pk}/samples").iterdir())

        deadline = time.monotonic() + 120
        progress = embedding_progress(project_id=team.project.pk)
        while not progress["complete"]:
            if worker.poll() is not None:
                pytest.fail(f"the worker exited early:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not embedded within 120 s: {progress}\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
            progress = embedding_progress(project_id=team.project.pk)
    finally:
        stop(worker)

    assert progress["per_backbone"] == {b: len(images) for b in BACKBONES}
    for backbone in BACKBONES:
        rows = list(Embedding.objects.filter(project_id=team.project.pk, backbone=backbone))
        assert {str(r.sample_id) for r in rows} == sample_ids
        for row in rows:
            assert row.error == ""
            vector = np.frombuffer(bytes(row.vector), dtype=np.float16).astype(np.float32)
            assert vector.shape == (1280,) and abs(np.linalg.norm(vector) - 1) < 1e-2
    text = log.read_text()
    assert "training.tasks.embed_project" in text and "succeeded" in text
