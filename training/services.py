"""Writes of the training app: embeddings, training jobs (state machine), model versions."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.dispatch import enqueue
from labeling.models import Sample
from projects.models import Project
from training.models import Embedding, ModelVersion, TrainingJob

log = logging.getLogger(__name__)


def _scheduled_key(project_id) -> str:
    return f"embed-scheduled:{project_id}"


def embeddings_schedule(*, project_id) -> bool:
    """Queue one embedding run for the project unless one is already waiting (coalescing).

    Runs after the upload committed, so it never raises: with the cache unreachable it still tries
    to queue; with the broker unreachable it logs, frees the coalescing key and the periodic sweep
    queues the run later (config.dispatch).
    """
    from config.dispatch import cache_add, enqueue
    from training.tasks import embed_project

    key = _scheduled_key(project_id)
    if not cache_add(key, 1, timeout=600):
        return False
    transaction.on_commit(lambda: enqueue(embed_project, args=[str(project_id)], release_key=key))
    return True


def _missing_ids(project_id, backbone: str) -> list:
    done = Embedding.objects.filter(project_id=project_id, backbone=backbone).values("sample_id")
    return list(
        Sample.objects.filter(project_id=project_id)
        .exclude(pk__in=done)
        .order_by("created", "id")
        .values_list("pk", flat=True)
    )


def _read(sample: Sample) -> bytes:
    with default_storage.open(sample.image_name, "rb") as handle:
        return handle.read()


def _error_row(sample: Sample, project_id, backbone: str, exc: BaseException) -> Embedding:
    message = f"{type(exc).__name__}: {exc}"[:300]
    return Embedding(sample=sample, project_id=project_id, backbone=backbone, vector=b"", error=message)


def _embed_batch(embedder, samples: list[Sample], images: list[bytes], *, project_id, backbone: str, batch_size: int) -> list[Embedding]:
    """Vectors for a batch; when the batch fails, image by image so one bad file fails only itself."""
    try:
        vectors = embedder.embed(images, batch_size=batch_size).astype(np.float16)
    except Exception:
        log.warning("embedding a batch of %d with %s failed; retrying one by one", len(images), backbone, exc_info=True)
    else:
        return [
            Embedding(sample=s, project_id=project_id, backbone=backbone, vector=v.tobytes())
            for s, v in zip(samples, vectors)
        ]
    rows = []
    for sample, data in zip(samples, images):
        try:
            (vector,) = embedder.embed([data], batch_size=1).astype(np.float16)
        except Exception as exc:  # undecodable file: an error row, not a task that fails forever
            log.warning("cannot embed %s with %s: %s", sample.image_name, backbone, exc)
            rows.append(_error_row(sample, project_id, backbone, exc))
        else:
            rows.append(Embedding(sample=sample, project_id=project_id, backbone=backbone, vector=vector.tobytes()))
    return rows


def _store(rows: list[Embedding]) -> int:
    """Insert rows whose samples still exist (a sample may be deleted while its batch is embedded)."""
    for attempt in range(2):
        alive = set(Sample.objects.filter(pk__in=[r.sample_id for r in rows]).values_list("pk", flat=True))
        rows = [r for r in rows if r.sample_id in alive]
        if not rows:
            return 0
        try:
            # ignore_conflicts: a second worker that embedded the same samples meanwhile is harmless.
            # Own atomic block: the FK check is deferred to its commit, where the error is caught.
            with transaction.atomic():
                Embedding.objects.bulk_create(rows, ignore_conflicts=True)
            return len(rows)
        except IntegrityError:  # deleted between the check and the insert: check again, once
            if attempt:
                raise
    return 0


def embeddings_compute(*, project_id, backbones: list[str] | None = None, batch_size: int | None = None) -> int:
    """Embed every sample of the project that lacks a vector; idempotent, resumable. Returns the count."""
    from training.embedders import embedder_get

    from config.dispatch import cache_delete

    # Cleared first, so uploads arriving while this runs schedule a follow-up run.
    cache_delete(_scheduled_key(project_id))
    backbones = backbones or settings.PICTOR_BACKBONES
    batch_size = batch_size or settings.PICTOR_EMBED_BATCH
    written = 0
    for backbone in backbones:
        # One query for the work list (not one NOT IN scan per batch); samples uploaded after this
        # point are left to the follow-up run their upload scheduled.
        missing = _missing_ids(project_id, backbone)
        if not missing:
            continue
        embedder = embedder_get(backbone)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            by_id = Sample.objects.in_bulk(chunk)
            batch = [by_id[pk] for pk in chunk if pk in by_id]  # deleted meanwhile: skipped
            images, ok, rows = [], [], []
            for sample in batch:
                try:
                    images.append(_read(sample))
                    ok.append(sample)
                except Exception as exc:  # a lost file must not block the rest of the project
                    log.warning("cannot read %s: %s", sample.image_name, exc)
                    rows.append(_error_row(sample, project_id, backbone, exc))
            if images:
                rows += _embed_batch(embedder, ok, images, project_id=project_id, backbone=backbone, batch_size=batch_size)
            written += _store(rows)
    return written


def embeddings_resume_all() -> int:
    """Schedule every project that has samples without a vector for some backbone."""
    from django.db.models import Count

    from training.models import Embedding as E

    want = len(settings.PICTOR_BACKBONES)
    totals = dict(Sample.objects.values_list("project_id").annotate(n=Count("id")).values_list("project_id", "n"))
    have = dict(
        E.objects.filter(backbone__in=settings.PICTOR_BACKBONES)
        .values_list("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    scheduled = 0
    for project_id, n in totals.items():
        if have.get(project_id, 0) < n * want and embeddings_schedule(project_id=project_id):
            scheduled += 1
    return scheduled


# ----------------------------------------------------------------------------- jobs
#
# queued → running → succeeded | failed | cancelled. Every transition is a conditional UPDATE on
# the current status, so two workers (or a worker and the sweeper) can never both win one.




S = TrainingJob.Status


class JobGone(Exception):
    """The job was cancelled or failed by someone else (the sweeper, a user) while running."""


def training_job_create(*, project, mode: str, user=None) -> TrainingJob:
    if mode not in ModelVersion.Mode.values:
        from django.core.exceptions import ValidationError

        raise ValidationError({"mode": "mode must be 'quick' or 'full'."})
    job = TrainingJob.objects.create(project=project, mode=mode, created_by=user)
    from training.tasks import run_training_job

    queue = "training" if mode == ModelVersion.Mode.FULL else "default"
    # If the broker is down the job stays queued; the jobs sweep re-sends queued jobs.
    transaction.on_commit(lambda: enqueue(run_training_job, args=[str(job.pk)], queue=queue))
    return job


def training_job_claim(*, job_id) -> TrainingJob | None:
    now = timezone.now()
    claimed = TrainingJob.objects.filter(pk=job_id, status=S.QUEUED, cancel_requested=False).update(
        status=S.RUNNING, started=now, heartbeat=now, attempts=F("attempts") + 1
    )
    if not claimed:
        TrainingJob.objects.filter(pk=job_id, status=S.QUEUED, cancel_requested=True).update(
            status=S.CANCELLED, finished=now
        )
        return None
    return TrainingJob.objects.select_related("project").get(pk=job_id)


def training_job_heartbeat(*, job: TrainingJob, progress: float | None = None, message: str | None = None,
                           history_entry: dict | None = None) -> None:
    """Record liveness and progress; raise JobGone if the job is no longer ours to run."""
    fields = {"heartbeat": timezone.now()}
    if progress is not None:
        fields["progress"] = max(0.0, min(1.0, float(progress)))
    if message is not None:
        fields["message"] = message[:200]
    if history_entry is not None:
        job.history = [*job.history, history_entry]
        fields["history"] = job.history
    if not TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(**fields):
        raise JobGone()


def training_job_cancel_requested(*, job: TrainingJob) -> bool:
    return TrainingJob.objects.filter(pk=job.pk, cancel_requested=True).exists()


def training_job_finish(*, job: TrainingJob, status: str, error: str = "", model: ModelVersion | None = None) -> bool:
    updated = TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(
        status=status,
        error=error[:4000],
        model=model,
        finished=timezone.now(),
        progress=1.0 if status == S.SUCCEEDED else F("progress"),
    )
    return bool(updated)


def training_job_cancel(*, job: TrainingJob) -> TrainingJob:
    """Ask a job to stop: a queued one is cancelled now, a running one at its next step."""
    now = timezone.now()
    TrainingJob.objects.filter(pk=job.pk, status__in=[S.QUEUED, S.RUNNING]).update(cancel_requested=True)
    TrainingJob.objects.filter(pk=job.pk, status=S.QUEUED).update(status=S.CANCELLED, finished=now)
    job.refresh_from_db()
    return job


def training_jobs_sweep(*, stale_seconds: int | None = None) -> int:
    """Fail running jobs whose worker stopped sending heartbeats (killed, lost, out of memory)."""
    stale_seconds = stale_seconds or settings.PICTOR_JOB_STALE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    return TrainingJob.objects.filter(status=S.RUNNING, heartbeat__lt=cutoff).update(
        status=S.FAILED,
        finished=timezone.now(),
        error=f"The worker stopped responding (no heartbeat for {stale_seconds} s); the job was failed. "
        "The deployed model is unchanged.",
    )


# ----------------------------------------------------------------------------- model versions


def model_version_create(*, project, mode: str, features: str, label_names: list[str], thresholds, metrics: dict,
                         predictions: list, n_train: int, artifact: bytes, suffix: str) -> ModelVersion:
    """Store the artifact first, then the row that points at it (removed again if the row fails)."""
    from labeling.storage import files_delete, files_write

    model_id = uuid.uuid4()
    name = f"projects/{project.pk}/models/{model_id}.{suffix}"
    files_write([(name, artifact)])
    try:
        with transaction.atomic():
            # Lock the project row so concurrent trainings get distinct version numbers.
            Project.objects.select_for_update().filter(pk=project.pk).first()
            last = ModelVersion.objects.filter(project=project).order_by("-version").values_list("version", flat=True).first()
            return ModelVersion.objects.create(
                id=model_id, project=project, version=(last or 0) + 1, mode=mode, features=features,
                label_names=label_names, thresholds=thresholds, metrics=metrics, predictions=predictions,
                n_train=n_train, artifact_name=name,
            )
    except BaseException:
        files_delete([name])
        raise


def worse_than_quick(*, model: ModelVersion) -> bool:
    """A full model that scored below the quick model's recipe on its own held-out split: it must
    not be deployed (or shown as better) without saying so."""
    m = model.metrics or {}
    base = m.get("baseline_quick") or {}
    if model.mode != ModelVersion.Mode.FULL or m.get("accuracy") is None or base.get("accuracy") is None:
        return False
    return float(m["accuracy"]) < float(base["accuracy"])


@transaction.atomic
def model_deploy(*, model: ModelVersion, pinned: bool = True) -> ModelVersion:
    """Make `model` the project's deployed version; the previous one stops being deployed."""
    # Serialise deployments of one project on its row; the partial unique index backs this up.
    Project.objects.select_for_update().filter(pk=model.project_id).first()
    ModelVersion.objects.filter(project=model.project_id, deployed=True).exclude(pk=model.pk).update(deployed=False)
    fields = {"deployed": True, "deployed_at": timezone.now()}
    if pinned:
        fields["pinned"] = True
    ModelVersion.objects.filter(pk=model.pk).update(**fields)
    model.refresh_from_db()
    transaction.on_commit(lambda: _model_changed(model.project_id))
    return model


def model_delete(*, model: ModelVersion) -> None:
    from django.core.exceptions import ValidationError

    from labeling.storage import files_delete

    if model.deployed:
        raise ValidationError("The deployed model cannot be deleted; deploy another version first.")
    name = model.artifact_name
    model.delete()
    transaction.on_commit(lambda: files_delete([name]))


def _model_changed(project_id) -> None:
    from training.signals import model_changed

    model_changed.send(sender=ModelVersion, project_id=project_id)


def quick_models_prune(*, project, keep: int = 5) -> int:
    """Quick retrains happen on every label: keep the newest few, the deployed and any pinned ones."""
    from labeling.storage import files_delete

    old = list(
        ModelVersion.objects.filter(project=project, mode=ModelVersion.Mode.QUICK, deployed=False, pinned=False)
        .order_by("-version")[keep:]
    )
    names = [m.artifact_name for m in old]
    ModelVersion.objects.filter(pk__in=[m.pk for m in old]).delete()
    TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK, status__in=TrainingJob.FINAL).exclude(
        pk__in=TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK).order_by("-created").values("pk")[:20]
    ).delete()
    transaction.on_commit(lambda: files_delete(names))
    return len(old)


def training_jobs_resend(*, older_than: int = 300) -> int:
    """Re-send queued jobs nobody picked up (the broker was down when they were created).

    A duplicate delivery is harmless: only one worker's claim (queued → running) can succeed.
    """
    from config.dispatch import cache_add
    from training.tasks import run_training_job

    cutoff = timezone.now() - timedelta(seconds=older_than)
    sent = 0
    for job in TrainingJob.objects.filter(status=S.QUEUED, created__lt=cutoff).only("pk", "mode")[:100]:
        if cache_add(f"job-resent:{job.pk}", 1, timeout=600):
            queue = "training" if job.mode == ModelVersion.Mode.FULL else "default"
            sent += enqueue(run_training_job, args=[str(job.pk)], queue=queue)
    return sent


def quick_models_refresh_stale() -> int:
    """Queue a quick retrain where labels changed after the newest quick model (missed dispatches)."""
    from django.db.models import Max

    from labeling.models import LabelEvent
    from training.quick import quick_retrain_schedule

    last_label = dict(
        LabelEvent.objects.values_list("sample__project_id").annotate(t=Max("created")).values_list("sample__project_id", "t")
    )
    last_model = dict(
        ModelVersion.objects.filter(mode=ModelVersion.Mode.QUICK).values_list("project_id").annotate(t=Max("created"))
        .values_list("project_id", "t")
    )
    last_try = dict(
        TrainingJob.objects.filter(mode=ModelVersion.Mode.QUICK).values_list("project_id").annotate(t=Max("created"))
        .values_list("project_id", "t")
    )
    n = 0
    for project_id, labeled in last_label.items():
        newest = max(filter(None, [last_model.get(project_id), last_try.get(project_id)]), default=None)
        if newest is None or labeled > newest:
            n += quick_retrain_schedule(project_id=project_id)
    return n
