"""Runs one training job through its state machine; the Celery task is a thin call into this."""

from __future__ import annotations

import logging
import traceback

from django.db import DatabaseError

from training import services
from training.models import ModelVersion, TrainingJob

log = logging.getLogger(__name__)
S = TrainingJob.Status


def training_job_run(*, job_id) -> str | None:
    """Claim the job (a second delivery finds it claimed and returns), train, record the outcome."""
    job = services.training_job_claim(job_id=job_id)
    if job is None:
        return None
    from training import full, quick
    from training.ml.finetune import Cancelled

    try:
        if job.mode == ModelVersion.Mode.QUICK:
            model = quick.quick_train(job=job)
        else:
            model = full.full_train(job=job)
    except services.JobGone:
        log.info("job %s was ended elsewhere while running", job_id)
        return None
    except Cancelled:
        services.training_job_finish(job=job, status=S.CANCELLED, error="Cancelled by a user.")
        return S.CANCELLED
    except quick.NotEnoughLabels as exc:
        services.training_job_finish(job=job, status=S.FAILED, error=str(exc))
        return S.FAILED
    except DatabaseError:
        # Transient (connection lost, lock timeout): let the task retry from a clean state.
        TrainingJob.objects.filter(pk=job.pk, status=S.RUNNING).update(status=S.QUEUED)
        raise
    except Exception as exc:
        log.exception("training job %s failed", job_id)
        services.training_job_finish(
            job=job, status=S.FAILED, error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=5)}"
        )
        return S.FAILED
    if not services.training_job_finish(job=job, status=S.SUCCEEDED, model=model):
        # Cancelled or swept in the last instant: the version exists but is not deployed by us.
        return None
    if job.mode == ModelVersion.Mode.QUICK:
        quick.queue_refresh(project_id=job.project_id)
    return S.SUCCEEDED


def training_job_timed_out(*, job_id) -> None:
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is not None:
        services.training_job_finish(job=job, status=S.FAILED, error="The job hit its time limit.")
