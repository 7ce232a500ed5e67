"""The periodic sweeps through REAL `celery beat` and a real worker, started as the Procfile does.

Beat used to refuse both sweeps ("soft_time_limit must be less than or equal to time_limit"), so a
stale training job was never failed and a lost embedding run never resumed. Here the sweep interval
and the staleness threshold are shortened through the environment; nothing calls a sweep directly.
"""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from tests.procs import celery_beat, celery_worker, clean_env, shared_data_dir, stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _wait(condition, *, timeout: float, logs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail("condition not reached in time:\n" + logs())


def test_it_fails_a_stale_job_and_resumes_lost_embeddings_through_beat(team, settings, tmp_path):
    from labeling.tests.factories import make_sample
    from training.models import Embedding, TrainingJob
    from training.tests.factories import make_model

    env = clean_env(
        **shared_data_dir(settings, tmp_path / "data"),
        PICTOR_BACKBONES="lite0",
        PICTOR_SWEEP_SECONDS="1",
        PICTOR_JOB_STALE_SECONDS="5",
        OMP_NUM_THREADS="1",
    )
    settings.PICTOR_BACKBONES = ["lite0"]
    project = team.project
    deployed = make_model(project, deployed=True)
    # A full training whose worker was killed: running, its last heartbeat long ago.
    job = TrainingJob.objects.create(
        project=project,
        mode="full",
        status=TrainingJob.Status.RUNNING,
        started=timezone.now() - timedelta(minutes=5),
        heartbeat=timezone.now() - timedelta(minutes=5),
    )
    # Samples whose embedding message was lost (never reached the broker).
    with mock.patch("training.pipeline.samples_added"):
        for seed in range(3):
            make_sample(project, seed=seed)
    assert not Embedding.objects.filter(project_id=project.pk).exists()

    procs, logs_ = [], []
    for name, launch in {
        "worker": lambda log: celery_worker("default,embeddings", env=env, log=log, name="default"),
        "beat": lambda log: celery_beat(env=env, log=log),
    }.items():
        log = tmp_path / f"{name}.log"
        logs_.append(log)
        procs.append(launch(log))

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs_ if p.exists())

    try:
        _wait(lambda: TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.FAILED, timeout=40, logs=logs)
        _wait(
            lambda: Embedding.objects.filter(project_id=project.pk, backbone="lite0").count() == 3,
            timeout=50,
            logs=logs,
        )
    finally:
        for proc in procs:
            stop(proc)
    job.refresh_from_db()
    assert "deployed model is unchanged" in job.error
    deployed.refresh_from_db()
    assert deployed.deployed
    assert "soft_time_limit must be less" not in logs()
