"""The quick model on real embeddings: retrained from labels, evaluated honestly, deployed, suggesting."""

from unittest import mock

import numpy as np
import pytest
from rest_framework.test import APIClient

from conftest import datasets_dir
from labeling.models import QueueBatch
from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from django.core.files.base import ContentFile

from training import quick, runner, selectors, services
from training.ml import heads
from training.models import ModelVersion, TrainingJob

HYM = datasets_dir() / "hymenoptera_data"


@pytest.fixture
def hym_project(team, settings, tmp_path):
    """12 ants + 12 bees, embedded with lite0 only (fast), 8+8 labeled."""
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    settings.PICTOR_BACKBONES = ["lite0"]
    samples = []
    for cls in ("ants", "bees"):
        for i, p in enumerate(sorted((HYM / "train" / cls).glob("*.jpg"))[:12]):
            s = make_sample(team.project, data=p.read_bytes())
            samples.append((cls, s, i < 8))
    services.embeddings_compute(project_id=team.project.pk)
    for cls, s, labeled in samples:
        if labeled:
            sample_labels_set(sample=s, names=[cls], user=team.user("labeler"))
    return team, samples


def test_quick_retrain_fits_evaluates_out_of_fold_and_deploys(hym_project):
    team, samples = hym_project
    assert runner.quick_retrain_run(project_id=team.project.pk) == "succeeded"
    model = ModelVersion.objects.get(project=team.project)
    assert model.deployed and model.mode == "quick" and model.label_names == ["ants", "bees"]
    # 16 labels: below heads.LOO_BELOW, so leave-one-out (still held out, still honest)
    assert model.metrics["honest"] and model.metrics["evaluation"] == "leave_one_out"
    assert "cross-validation" in model.metrics["evaluation_detail"]
    assert model.metrics["accuracy"] >= 0.75  # lite0 features separate ants from bees well
    # The stored metrics are exactly scikit-learn's on the stored out-of-fold predictions.
    held_out = selectors.model_predictions(model=model)
    assert len(held_out) == model.n_train  # one out-of-fold row per labeled sample, in its own table
    y = np.array([["ants", "bees"].index(t) for _, t, _, _ in held_out])
    pred = np.array([["ants", "bees"].index(p) for _, _, p, _ in held_out])
    from sklearn.metrics import accuracy_score, f1_score

    assert model.metrics["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert model.metrics["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    job = TrainingJob.objects.get(project=team.project)
    assert job.status == "succeeded" and job.model_id == model.pk and job.progress == 1.0


def test_a_quick_model_from_two_examples_of_two_labels(team, settings):
    """Nyckel-style: two examples per label are enough for a model (evaluated by leave-one-out)."""
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    settings.PICTOR_BACKBONES = ["lite0", "pixels"]
    for cls in ("ants", "bees"):
        for p in sorted((HYM / "train" / cls).glob("*.jpg"))[:2]:
            make_sample(team.project, data=p.read_bytes(), labels=[cls])
    services.embeddings_compute(project_id=team.project.pk)
    assert runner.quick_retrain_run(project_id=team.project.pk) == "succeeded"
    model = ModelVersion.objects.get(project=team.project)
    assert model.deployed and model.n_train == 4 and model.label_names == ["ants", "bees"]
    assert model.metrics["evaluation"] == "leave_one_out" and model.metrics["honest"]
    assert model.metrics["representation"] == model.features
    assert {r["feature_key"] for r in model.metrics["cv_table"]} == {"lite0", "pixels", "lite0+pixels"}


def test_suggestions_and_active_queue_follow_the_model(hym_project):
    team, samples = hym_project
    runner.quick_retrain_run(project_id=team.project.pk)
    unlabeled = [s for _, s, labeled in samples if not labeled]
    sugg = quick.suggestions(team.project, unlabeled)
    assert set(sugg) == {s.pk for s in unlabeled}
    truth = {s.pk: cls for cls, s, labeled in samples if not labeled}
    correct = sum(sugg[pk]["label"] == truth[pk] for pk in sugg)
    assert correct >= 6  # of 8; a random head would average 4
    batch = QueueBatch.objects.get(project=team.project)
    assert set(batch.sample_ids) <= {str(s.pk) for s in unlabeled} and batch.model_version == 1


def test_labels_schedule_one_coalesced_retrain(team, django_capture_on_commit_callbacks):
    s1, s2 = make_sample(team.project, seed=1), make_sample(team.project, seed=2)
    with mock.patch("training.tasks.quick_retrain.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            sample_labels_set(sample=s1, names=["a"], user=None)
            sample_labels_set(sample=s2, names=["b"], user=None)
        with django_capture_on_commit_callbacks(execute=True):
            sample_labels_set(sample=s1, names=["b"], user=None)
    assert apply.call_count == 1  # one pending retrain covers the whole burst
    runner.quick_retrain_run(project_id=team.project.pk)  # runs (no vectors: nothing to fit) and clears the flag
    with mock.patch("training.tasks.quick_retrain.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            sample_labels_set(sample=s2, names=["a"], user=None)
    assert apply.call_count == 1


def test_not_enough_labels_fails_an_explicit_quick_job_clearly(team):
    make_sample(team.project, seed=1, labels=["ants"])
    job = TrainingJob.objects.create(project=team.project, mode="quick")
    from training.runner import training_job_run

    assert training_job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert "at least two labels" in job.error
    assert training_job_run(job_id=job.pk) is None  # a second delivery does nothing


def test_deploy_and_rollback_and_prune(hym_project):
    team, _ = hym_project
    for _ in range(3):
        runner.quick_retrain_run(project_id=team.project.pk)
    v = {m.version: m for m in ModelVersion.objects.filter(project=team.project)}
    assert v[3].deployed and not v[1].deployed
    services.model_deploy(model=v[1])
    assert ModelVersion.objects.get(deployed=True, project=team.project).version == 1
    # A pinned deployment is not replaced by the next automatic quick retrain.
    runner.quick_retrain_run(project_id=team.project.pk)
    assert ModelVersion.objects.get(deployed=True, project=team.project).version == 1
    for _ in range(6):
        runner.quick_retrain_run(project_id=team.project.pk)
    versions = set(ModelVersion.objects.filter(project=team.project).values_list("version", flat=True))
    assert 1 in versions and len(versions) <= 6


def test_trainings_and_models_api(hym_project, django_capture_on_commit_callbacks):
    team, _ = hym_project
    admin = APIClient()
    admin.force_authenticate(team.user("admin"))
    base = f"/api/v1/projects/{team.project.pk}"
    with mock.patch("training.tasks.run_training_job.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            r = admin.post(f"{base}/trainings", {"mode": "quick"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "queued" and apply.call_count == 1
    job_id = r.json()["id"]
    from training.runner import training_job_run

    training_job_run(job_id=job_id)
    body = admin.get(f"{base}/trainings/{job_id}").json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0 and body["model"]["version"] == 1
    assert set(body) >= {"id", "mode", "status", "progress", "error", "model", "created", "finished"}
    models = admin.get(f"{base}/models").json()["results"]
    assert models[0]["deployed"] and set(models[0]["metrics"]) >= {
        "accuracy",
        "macro_f1",
        "per_label",
        "confusion_matrix",
    }
    assert models[0]["metrics"]["confusion_matrix"]["labels"] == ["ants", "bees"]
    r = admin.post(f"{base}/models/{models[0]['id']}/deploy")
    assert r.status_code == 200 and r.json()["deployed"] is True
    assert admin.post(f"{base}/trainings", {"mode": "turbo"}, format="json").status_code == 400
    assert admin.post(f"{base}/trainings/{job_id}/cancel").status_code == 409
    labeler = APIClient()
    labeler.force_authenticate(team.user("labeler"))
    assert labeler.post(f"{base}/trainings", {"mode": "quick"}, format="json").status_code == 403
    assert labeler.post(f"{base}/models/{models[0]['id']}/deploy").status_code == 403
    assert labeler.get(f"{base}/models").status_code == 200
    assert admin.get(f"{base}/trainings/not-a-uuid").status_code == 404
    assert admin.get(f"/api/v1/projects/{team.project.pk}").json()["deployed_model"]["version"] == 1


def test_cancel_a_queued_job_and_the_sweeper_fails_stale_running_jobs(team):
    from datetime import timedelta

    from django.utils import timezone

    job = TrainingJob.objects.create(project=team.project, mode="full")
    services.training_job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == "cancelled"
    stale = TrainingJob.objects.create(
        project=team.project, mode="full", status="running", heartbeat=timezone.now() - timedelta(minutes=10)
    )
    from projects.tests.factories import ProjectFactory

    # One active full training per project (a database constraint): the fresh one is another project's.
    fresh = TrainingJob.objects.create(
        project=ProjectFactory(), mode="full", status="running", heartbeat=timezone.now()
    )
    assert services.training_jobs_sweep(stale_seconds=60) == 1
    stale.refresh_from_db(), fresh.refresh_from_db()
    assert stale.status == "failed" and "heartbeat" in stale.error and fresh.status == "running"


def test_a_quick_model_downloads_as_one_onnx_graph_that_agrees_with_the_server(hym_project, client_for):
    import onnxruntime as ort
    from django.urls import reverse

    from training.ml.backbone import preprocess

    team, samples = hym_project
    runner.quick_retrain_run(project_id=team.project.pk)
    model = ModelVersion.objects.get(project=team.project)
    r = client_for(team.user("viewer")).get(
        reverse("model_download", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    )
    assert r.status_code == 200 and "attachment" in r["Content-Disposition"]
    graph = b"".join(r.streaming_content)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    _, sample, _ = samples[-1]
    from django.core.files.storage import default_storage

    with default_storage.open(sample.image_name, "rb") as f:
        x = preprocess([f.read()], 224)
    (probs,) = session.run(None, {"input": x})
    _, server = quick.quick_predict(model=model, sample_ids=[sample.pk])
    assert np.allclose(probs[0], server[0], atol=0.03), (probs, server)


def test_a_quick_model_on_the_pixels_feature_exports_to_onnx_too(hym_project, client_for, settings):
    import onnxruntime as ort
    from django.core.files.storage import default_storage
    from django.urls import reverse

    from training.ml.backbone import preprocess

    team, samples = hym_project
    settings.PICTOR_BACKBONES = ["lite0", "pixels"]
    services.embeddings_compute(project_id=team.project.pk)
    runner.quick_retrain_run(project_id=team.project.pk)
    model = ModelVersion.objects.get(project=team.project)
    model.features = "lite0+pixels"  # whichever won, the graph must compute the classic feature
    data = quick.labeled_set(project=team.project, backbones=["lite0", "pixels"])
    head = heads.refit_recipe(data.features, data.y, feature_key="lite0+pixels", l2=0.1, multi_label=False)
    default_storage.delete(model.artifact_name)
    default_storage.save(model.artifact_name, ContentFile(head.to_bytes()))
    model.save()
    quick._heads.clear()
    r = client_for(team.user("viewer")).get(
        reverse("model_download", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    )
    assert r.status_code == 200
    session = ort.InferenceSession(b"".join(r.streaming_content), providers=["CPUExecutionProvider"])
    _, sample, _ = samples[-1]
    with default_storage.open(sample.image_name, "rb") as f:
        x = preprocess([f.read()], 224)
    (probs,) = session.run(None, {"input": x})
    _, server = quick.quick_predict(model=model, sample_ids=[sample.pk])
    assert np.allclose(probs[0], server[0], atol=0.03), (probs, server)
