"""The beat sweep of batch jobs: what a dead worker or a lost message left behind is sent again."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from batches import pipeline, services
from batches.models import Batch, BatchChunk
from batches.tests.conftest import images, write_folder


def test_the_batch_queue_and_its_sweep_are_wired():
    routes = settings.CELERY_TASK_ROUTES
    assert routes["batches.tasks.*"] == {"queue": "batch"}
    assert settings.CELERY_BEAT_SCHEDULE["batches-sweep"]["task"] == "batches.tasks.batches_sweep"
    import importlib

    tasks = importlib.import_module("batches.tasks")
    chunk = tasks.batch_chunk
    assert chunk.acks_late and chunk.reject_on_worker_lost and chunk.time_limit and chunk.max_retries


def test_the_sweep_resends_lost_chunks_and_listings_and_finishes_done_batches(
    team, model, tmp_path, settings, monkeypatch
):
    sent = []
    monkeypatch.setattr(pipeline, "enqueue", lambda task, *, args, **kw: sent.append((task, args)) or True)
    settings.PICTOR_BATCH_STALE_SECONDS = 60
    write_folder(tmp_path, images(130))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    batch = services.batch_start(project=team.project, source={"kind": "folder", "path": str(tmp_path)})
    services.batch_listing_run(batch_id=batch.pk)
    first, second, third = BatchChunk.objects.filter(batch=batch).order_by("index")
    services.batch_chunk_run(chunk_id=first.pk)
    old = timezone.now() - timedelta(seconds=120)
    # second: claimed by a worker that died two minutes ago; third: queued, batch progressing.
    BatchChunk.objects.filter(pk=second.pk).update(claimed=old, attempts=1)
    assert services.batches_sweep() == 1
    assert sent == [(pipeline.CHUNK, [second.pk])]
    assert services.batches_sweep() == 0  # not again at once (the resend is remembered a while)
    # No progress for the stale time: the unclaimed chunk's message counts as lost too.
    Batch.objects.filter(pk=batch.pk).update(progressed=old)
    BatchChunk.objects.filter(pk=third.pk).update(created=old)
    sent.clear()
    services.batches_sweep()
    assert (pipeline.CHUNK, [third.pk]) in sent
    # A listing that stopped (its task lost) is sent again.
    stalled = services.batch_start(project=team.project, source={"kind": "folder", "path": str(tmp_path)})
    Batch.objects.filter(pk=stalled.pk).update(created=old)
    sent.clear()
    services.batches_sweep()
    assert (pipeline.LIST, [str(stalled.pk)]) in sent
    # Every chunk done but the batch still running (its last worker died after the chunk's commit).
    BatchChunk.objects.filter(batch=batch).update(status="done")
    services.batches_sweep()
    assert Batch.objects.get(pk=batch.pk).status == "succeeded"
