"""The pipeline: a training asked for before its labeled samples have features waits for them
(queued, with a message), trains once they exist, and fails clearly past its time limit."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from training import pipeline, runner, services
from training.models import TrainingJob


@pytest.fixture
def labeled_without_features(team, settings):
    settings.PICTOR_BACKBONES = ["lite0"]
    for i, name in enumerate(["ants", "bees", "ants", "bees"]):
        sample_labels_set(sample=make_sample(team.project, seed=i), names=[name], user=None)
    return team.project


def test_it_keeps_a_quick_job_queued_until_the_features_exist_then_trains(labeled_without_features):
    project = labeled_without_features
    job = services.training_job_create(project=project, mode="quick")
    with mock.patch.object(pipeline, "training_waiting") as again:
        assert runner.training_job_run(job_id=job.pk) == "queued"
    job.refresh_from_db()
    assert job.status == "queued" and "waiting for the features of 4 of 4 labeled images" in job.message
    assert again.call_count == 1 and again.call_args.kwargs["job"].pk == job.pk

    services.embeddings_compute(project_id=project.pk)
    assert runner.training_job_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.status == "succeeded" and job.model is not None


def test_it_keeps_a_full_job_queued_on_its_own_queue_until_the_features_exist(labeled_without_features):
    """A full training judged against (and blended with) the quick head must not start without the
    quick head's features: it waits like a quick job, and is looked at again on the training queue."""
    job = services.training_job_create(project=labeled_without_features, mode="full")
    with mock.patch.object(pipeline, "enqueue") as enqueue, mock.patch("training.full.full_train") as train:
        assert runner.training_job_run(job_id=job.pk) == "queued"
    job.refresh_from_db()
    assert job.status == "queued" and "waiting for the features of 4 of 4 labeled images" in job.message
    assert not train.called
    assert enqueue.call_args.args == (pipeline.RUN,) and enqueue.call_args.kwargs["queue"] == "training"
    assert enqueue.call_args.kwargs["args"] == [str(job.pk)]


def test_it_fails_a_waiting_job_clearly_after_the_time_limit(labeled_without_features, settings):
    settings.PICTOR_FEATURES_WAIT_SECONDS = 30
    job = services.training_job_create(project=labeled_without_features, mode="quick")
    TrainingJob.objects.filter(pk=job.pk).update(created=timezone.now() - timedelta(seconds=31))
    assert runner.training_job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert "were not ready within 30 s" in job.error and "embeddings" in job.error


def test_it_does_not_resend_a_job_that_waits_for_features(labeled_without_features):
    from training import selectors

    job = services.training_job_create(project=labeled_without_features, mode="quick")
    TrainingJob.objects.filter(pk=job.pk).update(created=timezone.now() - timedelta(seconds=400))
    assert [j.pk for j in selectors.training_jobs_lost()] == [job.pk]
    with mock.patch.object(pipeline, "training_waiting"):
        runner.training_job_run(job_id=job.pk)
    assert selectors.training_jobs_lost() == []


def test_it_trains_at_once_after_an_upload_through_the_api(team, settings, django_capture_on_commit_callbacks):
    """Upload labeled images and ask for a quick training in the next request: a model comes out."""
    import base64

    from rest_framework.test import APIClient

    from config.dispatch import task_get
    from labeling.tests.factories import jpeg_bytes

    settings.PICTOR_BACKBONES = ["lite0"]
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    base = f"/api/v1/projects/{team.project.pk}"
    items = [
        {"data": base64.b64encode(jpeg_bytes(i)).decode(), "labels": ["ants" if i % 2 else "bees"]} for i in range(6)
    ]
    queued = []
    with mock.patch.object(
        task_get("training.tasks.embed_project"), "apply_async", side_effect=lambda **kw: queued.append(kw)
    ):
        with django_capture_on_commit_callbacks(execute=True):
            assert c.post(f"{base}/samples", {"items": items}, format="json").status_code == 201
        # The features are not there yet when the training is asked for.
        with mock.patch.object(task_get("training.tasks.run_training_job"), "apply_async") as run:
            with django_capture_on_commit_callbacks(execute=True):
                r = c.post(f"{base}/trainings", {"mode": "quick"}, format="json")
    assert r.status_code == 202 and queued
    job_id = r.json()["id"]
    with mock.patch.object(pipeline, "training_waiting"):
        runner.training_job_run(job_id=run.call_args.kwargs["args"][0])
    body = c.get(f"{base}/trainings/{job_id}").json()
    assert body["status"] == "queued" and body["message"].startswith("waiting for the features")
    services.embeddings_compute(project_id=team.project.pk)  # the embedding worker catches up
    assert runner.training_job_run(job_id=job_id) == "succeeded"
    body = c.get(f"{base}/trainings/{job_id}").json()
    assert body["status"] == "succeeded" and body["model"] is not None


def test_it_does_not_pile_up_waiting_jobs_for_background_retrains(labeled_without_features):
    """A label-triggered retrain fits what has features now (or nothing) instead of waiting."""
    project = labeled_without_features
    with mock.patch.object(pipeline, "training_waiting") as again:
        assert runner.quick_retrain_run(project_id=project.pk) is None  # no features at all: nothing to fit
    assert again.call_count == 0 and not TrainingJob.objects.filter(project=project, status="queued").exists()
