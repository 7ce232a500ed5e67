"""Upload through the API → samples_added → embeddings_schedule → a REAL Celery worker on Redis → rows.

The worker is a separate process, so it must see what this test wrote: the test runs in
transaction mode (rows are committed), the worker's DATABASE_URL points at pytest-django's test
database, and both processes store media under the same PICTOR_DATA_DIR.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from conftest import datasets_dir
from tests.procs import celery_worker, clean_env, shared_data_dir, stop

HYM = datasets_dir() / "hymenoptera_data"
BACKBONES = ["lite0", "lite2"]


def _images(n_per_class: int) -> list[tuple[str, bytes]]:
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}; set PICTOR_DATASETS to the datasets folder")
    return [
        (path.name, path.read_bytes())
        for cls in ("ants", "bees")
        for path in sorted((HYM / "train" / cls).glob("*.jpg"))[:n_per_class]
    ]


@contextmanager
def embeddings_routed_to(queue: str):
    """Send this process's embed_project messages to a queue of this test's own.

    Other test runs on the same machine may share the Redis database and run workers on the
    ``embeddings`` queue; they must not take this test's message (nor this worker theirs). Only
    the queue name changes: the task is still sent by the real signal → schedule → route path.
    """
    from config.celery import app

    original = app.conf.task_routes

    def use(routes) -> None:
        app.conf.task_routes = routes
        app.amqp.flush_routes()
        app.amqp.router = app.amqp.Router()

    use({**original, "training.tasks.embed_project": {"queue": queue}})
    try:
        yield
    finally:
        use(original)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uploaded_images_are_embedded_by_a_real_worker_over_redis(team, settings, tmp_path):
    from training.models import Embedding
    from training.selectors import embedding_progress

    images = _images(3)
    # One data folder for both processes: settings derive MEDIA_ROOT = PICTOR_DATA_DIR/media and
    # MODEL_CACHE_DIR = PICTOR_DATA_DIR/model-cache, and shared_data_dir points this process's
    # storage there too. It skips unless PostgreSQL (the worker joins pytest's test database,
    # committed data thanks to transaction=True) and Redis are available.
    data_dir = tmp_path / "data"
    env = clean_env(
        **shared_data_dir(settings, data_dir),
        PICTOR_BACKBONES=",".join(BACKBONES),
        PICTOR_EMBED_BATCH="4",  # several batches for six images
    )
    settings.PICTOR_BACKBONES = BACKBONES
    media = data_dir / "media"
    log = tmp_path / "worker.log"
    queue = f"embeddings-test-{uuid.uuid4().hex[:12]}"
    worker = celery_worker(queue, env=env, log=log, name="embed")
    try:
        # Upload once the worker listens: a message waiting in Redis could meet another run's
        # FLUSHDB (the suite clears the cache, i.e. its Redis database, before every test).
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        api = APIClient()
        api.force_authenticate(team.user("labeler"))
        files = [SimpleUploadedFile(name, data, content_type="image/jpeg") for name, data in images]
        with embeddings_routed_to(queue):
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
