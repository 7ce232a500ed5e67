"""A 2,000-image batch from every source kind (a folder under an import root, an uploaded zip, tar and
gzipped tar, an S3 prefix on the moto server) through REAL Celery workers on the `batch` queue, one of
them SIGKILLed mid-chunk: the sweep re-sends the chunk it held, a second worker finishes, and every
item ends with exactly one result.

The workers must see what this test wrote, so the test runs in transaction mode, the workers'
DATABASE_URL is pytest-django's test database, and both processes share one PICTOR_DATA_DIR; for S3
the workers get the moto server's endpoint and credentials in their environment."""

from __future__ import annotations

import functools
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from batches.models import Batch, BatchChunk, BatchResult, BatchUpload
from batches.tests.conftest import images, tar_bytes, train_pixels_model, write_folder, zip_bytes
from tests.procs import celery_worker, clean_env, shared_data_dir, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N = 2000
S3_PREFIX = "shoot/"


@functools.cache
def _items() -> tuple[tuple[str, bytes], ...]:
    return tuple(images(N))  # the same 2,000 PNGs for every kind: made once per run


def _wait_ready(proc, log, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while " ready." not in (log.read_text() if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker did not start:\n{log.read_text()[-4000:] if log.exists() else ''}")
        time.sleep(0.2)


def _source(kind: str, *, client: APIClient, project, root, request) -> tuple[dict, dict, set[str]]:
    """Put the items where the kind reads them, as a user would: (source, worker env, expected keys)."""
    items = list(_items())
    names = {name for name, _ in items}
    if kind == "folder":
        write_folder(root, items)
        return {"kind": "folder", "path": str(root)}, {}, names
    if kind == "s3":
        from tests.s3 import s3_bucket

        env = request.getfixturevalue("s3_env")  # this process's environment, and the workers'
        s3 = s3_bucket("killed")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda it: s3.put_object(Bucket="killed", Key=S3_PREFIX + it[0], Body=it[1]), items))
        return {"kind": "s3", "uri": f"s3://killed/{S3_PREFIX}"}, env, {S3_PREFIX + name for name in names}
    data, filename = {
        "zip": lambda: (zip_bytes(items), "photos.zip"),
        "tar": lambda: (tar_bytes(items), "photos.tar"),
        "tar.gz": lambda: (tar_bytes(items, mode="w:gz"), "photos.tar.gz"),
    }[kind]()
    r = client.post(
        f"/api/v1/projects/{project.pk}/batches/uploads",
        {"file": SimpleUploadedFile(filename, data)},
        format="multipart",
    )
    assert r.status_code == 201, r.content
    assert BatchUpload.objects.get(pk=r.json()["upload_id"]).kind == kind[:3]  # a tar.gz is stored as tar
    return {"kind": "upload", "upload_id": r.json()["upload_id"]}, {}, names


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "tar.gz", "s3"])
def test_a_killed_worker_loses_no_item_and_duplicates_none(kind, team, tmp_path, settings, request):
    import redis

    from batches import services

    env = shared_data_dir(settings, tmp_path / "data")
    # Messages other tests' SIGKILLed workers never acknowledged would be redelivered to ours.
    redis.Redis.from_url(env["REDIS_URL"]).delete("unacked", "unacked_index", "unacked_mutex")
    settings.PICTOR_BACKBONES = ["pixels"]
    settings.PICTOR_QUICK_SECONDS = 0.5
    settings.PICTOR_BATCH_CHUNK = 50
    settings.PICTOR_BATCH_STALE_SECONDS = 4
    root = tmp_path / "archive"
    root.mkdir()
    settings.PICTOR_IMPORT_ROOTS = [str(root)]
    model = train_pixels_model(team.project)
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    source, source_env, expected = _source(kind, client=c, project=team.project, root=root, request=request)
    worker_env = clean_env(
        **env,
        **source_env,
        PICTOR_BACKBONES="pixels",
        PICTOR_IMPORT_ROOTS=str(root),
        PICTOR_BATCH_INFER="10",
        OMP_NUM_THREADS="1",
    )
    first = celery_worker("batch", env=worker_env, log=tmp_path / "w1.log", name="b1")
    second = None
    try:
        _wait_ready(first, tmp_path / "w1.log")
        r = c.post(f"/api/v1/projects/{team.project.pk}/batches", {"source": source}, format="json")
        assert r.status_code == 202, r.content
        batch_id = r.json()["id"]
        deadline = time.monotonic() + 120
        # Mid-chunk: results are written ten at a time, chunks hold fifty.
        while (n := BatchResult.objects.filter(batch_id=batch_id).count()) < 300 or n % 50 == 0:
            assert time.monotonic() < deadline, (tmp_path / "w1.log").read_text()[-4000:]
            time.sleep(0.1)
        stop(first, signal.SIGKILL)  # the whole worker, mid-chunk: its messages stay unacknowledged
        killed_at = BatchResult.objects.filter(batch_id=batch_id).count()
        assert killed_at < N, "the batch finished before the kill; make it bigger"
        interrupted = list(
            BatchChunk.objects.filter(batch_id=batch_id, status="pending", claimed__isnull=False).values_list(
                "pk", flat=True
            )
        )
        assert interrupted, "the kill should have hit a chunk in flight"
        second = celery_worker("batch", env=worker_env, log=tmp_path / "w2.log", name="b2")
        _wait_ready(second, tmp_path / "w2.log")
        deadline = time.monotonic() + 240
        while True:
            state = c.get(f"/api/v1/projects/{team.project.pk}/batches/{batch_id}").json()
            if state["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, (state, (tmp_path / "w2.log").read_text()[-4000:])
            services.batches_sweep()  # beat's job: re-send the chunks the dead worker held
            time.sleep(1.0)
        assert state["status"] == "succeeded", state
        assert (state["total"], state["done"], state["failed"]) == (N, N, 0)
        assert state["model"]["id"] == str(model.pk)
        keys = list(BatchResult.objects.filter(batch_id=batch_id).values_list("key", flat=True))
        assert len(keys) == N and set(keys) == expected
        seqs = set(BatchResult.objects.filter(batch_id=batch_id).values_list("seq", flat=True))
        assert seqs == set(range(N))  # one result per listed position, none twice
        assert not BatchChunk.objects.filter(batch_id=batch_id, status="pending").exists()
        # The chunk in flight ran again (and wrote only what it had not written before).
        assert all(a > 1 for a in BatchChunk.objects.filter(pk__in=interrupted).values_list("attempts", flat=True))
        assert Batch.objects.get(pk=batch_id).finished is not None
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second, signal.SIGQUIT)
