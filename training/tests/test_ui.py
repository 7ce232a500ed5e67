from unittest import mock

from django.urls import reverse

from labeling.models import LabelEvent
from labeling.tests.factories import make_sample
from training.models import ModelVersion, TrainingJob
from training.tests.factories import make_model


def test_models_page_lists_versions_side_by_side_and_deploys(team, client_for):
    v1 = make_model(team.project, deployed=True)
    v2 = make_model(team.project)
    c = client_for(team.user("admin"))
    page = c.get(reverse("models_page", kwargs={"project_id": team.project.pk})).content.decode()
    assert 'id="model-v1"' in page and 'id="model-v2"' in page and "0.600" in page  # toy accuracy 3/5
    c.post(reverse("model_deploy", kwargs={"project_id": team.project.pk, "model_id": v2.pk}))
    assert ModelVersion.objects.get(deployed=True).pk == v2.pk
    r = c.post(reverse("model_delete", kwargs={"project_id": team.project.pk, "model_id": v2.pk}), follow=True)
    assert "cannot be deleted" in r.content.decode()
    c.post(reverse("model_deploy", kwargs={"project_id": team.project.pk, "model_id": v1.pk}))  # roll back
    assert ModelVersion.objects.get(deployed=True).pk == v1.pk


def test_evaluation_page_has_per_label_table_clickable_confusion_and_plots(team, client_for):
    s = make_sample(team.project, seed=1)
    model = make_model(team.project)
    from training.services.models import held_out_store

    held_out_store(model=model, predictions=[[str(s.pk), "bees", "ants", 0.6]])
    c = client_for(team.user("viewer"))
    url = reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    page = c.get(url).content.decode()
    assert 'id="per-label"' in page and 'id="confusion"' in page and "pr.png" in page
    part = c.get(url + "?true=bees&predicted=ants", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and str(s.pk) in part
    png = c.get(
        reverse("model_plot", kwargs={"project_id": team.project.pk, "model_id": model.pk, "kind": "confusion"})
    )
    assert png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"


def test_job_progress_fragment_polls_until_final(team, client_for):
    job = TrainingJob.objects.create(
        project=team.project, mode="full", status="running", progress=0.4, message="epoch 2/8"
    )
    c = client_for(team.user("viewer"))
    url = reverse("job_status", kwargs={"project_id": team.project.pk, "job_id": job.pk})
    r = c.get(url, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and 'hx-trigger="every 1s"' in r.content.decode() and "40" in r.content.decode()
    TrainingJob.objects.filter(pk=job.pk).update(status="succeeded", progress=1.0)
    assert c.get(url, HTTP_HX_REQUEST="true").status_code == 286


def test_start_full_training_queues_one_job(team, client_for, django_capture_on_commit_callbacks):
    c = client_for(team.user("admin"))
    with mock.patch("training.tasks.run_training_job.apply_async") as apply:
        with django_capture_on_commit_callbacks(execute=True):
            c.post(reverse("training_start", kwargs={"project_id": team.project.pk}), {"mode": "full"})
            r = c.post(reverse("training_start", kwargs={"project_id": team.project.pk}), {"mode": "full"}, follow=True)
    assert apply.call_count == 1 and apply.call_args.kwargs["queue"] == "training"
    assert "already queued or running" in r.content.decode()


def test_review_confirm_and_fix(team, client_for):
    a = make_sample(team.project, seed=1, labels=["ants"])
    b = make_sample(team.project, seed=2, labels=["ants"])
    model = make_model(team.project, mode="quick")
    model.metrics["likely_errors"] = [
        {"sample_id": str(a.pk), "given": "ants", "predicted": "bees", "confidence": 0.93},
        {"sample_id": str(b.pk), "given": "ants", "predicted": "bees", "confidence": 0.91},
    ]
    model.save()
    c = client_for(team.user("admin"))
    url = reverse("review_page", kwargs={"project_id": team.project.pk})
    page = c.get(url).content.decode()
    assert f"review-{a.pk}" in page and f"review-{b.pk}" in page
    decide = reverse("review_decide", kwargs={"project_id": team.project.pk})
    c.post(decide, {"sample": str(a.pk), "decision": "confirm"})
    c.post(decide, {"sample": str(b.pk), "decision": "fix", "label": "bees"})
    assert [l.name for l in b.labels.all()] == ["bees"]
    assert LabelEvent.objects.filter(sample=a, via="review-confirm").exists()
    page = c.get(url).content.decode()
    assert f"review-{a.pk}" not in page and f"review-{b.pk}" not in page


def test_evaluation_page_says_which_representation_won(team, client_for):
    model = make_model(team.project, mode="quick")
    model.features = "lite2+pixels"
    model.metrics.update(
        {
            "representation": "lite2+pixels",
            "representation_label": "EfficientNet-Lite2 + grey pixels (PCA)",
            "evaluation": "leave_one_out",
            "evaluation_detail": "leave-one-out cross-validation (5 labeled samples)",
            "cv_table": [
                {"feature_key": "lite0", "l2": 0.1, "log_loss": 0.9, "accuracy": 0.6},
                {"feature_key": "lite2+pixels", "l2": 0.1, "log_loss": 0.4, "accuracy": 0.8},
                {"feature_key": "lite2+pixels", "l2": 1.0, "log_loss": 0.5, "accuracy": 0.8},
            ],
        }
    )
    model.save()
    url = reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    page = client_for(team.user("viewer")).get(url).content.decode()
    assert 'id="representation"' in page and "EfficientNet-Lite2 + grey pixels (PCA)" in page
    assert "leave-one-out cross-validation" in page
    table = page[page.index('id="representation-table"') :]
    assert table.index("lite2+pixels") < table.index("lite0") and "0.400" in table  # best row per candidate, best first


def test_evaluation_page_shows_the_full_trainings_recipe_and_its_candidates(team, client_for):
    model = make_model(team.project, mode="full")
    model.metrics["recipe"] = {
        "name": "lite2 · last 1 stage fine-tuned (LP-FT, lr 0.001) · flip TTA · blended 75% with 25% quick head",
        "quick_alone": False,
        "val_accuracy": 0.9,
        "candidates": [
            {
                "backbone": "lite0",
                "blocks": 0,
                "lr": 0.0,
                "weight": 0.5,
                "tta": False,
                "val_accuracy": 0.8,
                "val_loss": 0.5,
            },
            {
                "backbone": "lite2",
                "blocks": 1,
                "lr": 1e-3,
                "weight": 0.75,
                "tta": True,
                "val_accuracy": 0.9,
                "val_loss": 0.3,
            },
            {"backbone": "lite2", "blocks": 2, "lr": 1e-3, "skipped": "time budget"},
        ],
    }
    model.save()
    url = reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    page = client_for(team.user("viewer")).get(url).content.decode()
    assert 'id="recipe"' in page and "blended 75% with 25% quick head" in page and "among 3 candidates" in page
    table = page[page.index('id="recipe-table"') :]
    assert (
        "lite0 · linear probe" in table
        and "lite2 · last 1 stage, lr 0.001" in table
        and "skipped (time budget)" in table
    )
    assert "not offered as better" not in page
    assert "on the test split it never saw" in page
    # Retrained on all labels after scoring: the page no longer says the version never saw the test split.
    model.metrics["split"] = {"train": 70, "validation": 15, "test": 15}
    model.metrics["refit"] = {"reason": "refitted", "trained_on": 100}
    model.save()
    page = client_for(team.user("viewer")).get(url).content.decode()
    assert "never saw" not in page and "retrained on all 100 labels, those included" in page
    model.metrics["history"] = [
        {"candidate": "lite2 · last 1 stage · lr 0.001", "epoch": 3, "train_loss": 0.25, "val_accuracy": 0.9}
    ]
    model.save()
    page = client_for(team.user("viewer")).get(url).content.decode()
    history = page[page.index('id="history"') :]
    assert "lite2 · last 1 stage · lr 0.001" in history and "0.2500" in history
    model.metrics["recipe"].update(quick_alone=True, name="quick head alone (fine-tuning did not pay on validation)")
    model.save()
    page = client_for(team.user("viewer")).get(url).content.decode()
    assert "quick head alone" in page and "not offered as better" in page


def test_evaluation_page_says_which_probe_the_fine_tunes_were_blended_with(team, client_for):
    model = make_model(team.project, mode="full")
    model.metrics["recipe"] = {
        "name": "multi-layer probe alone (fine-tuning did not pay on validation)",
        "quick_alone": False,
        "val_accuracy": 0.9,
        "candidates": [],
        "probe": {
            "kind": "layers",
            "name": "multi-layer probe",
            "features": "layers",
            "l2": 0.01,
            "cv_log_loss": {"layers": 0.3141, "quick": 0.4242},
        },
    }
    model.save()
    url = reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    page = client_for(team.user("viewer")).get(url).content.decode()
    probe = page[page.index('id="probe"') :]
    probe = probe[: probe.index("</p>")]
    assert "multi-layer probe</strong>" in probe and "middle stages" in probe and "over the quick head" in probe
    assert "quick head 0.424" in probe and "multi-layer probe 0.314" in probe
    assert "not offered as better" not in page
    model.metrics["recipe"]["probe"] = {
        "kind": "quick",
        "name": "quick head",
        "features": "lite0+lite2",
        "l2": 0.01,
        "cv_log_loss": {"quick": 0.2, "layers": 0.25},
    }
    model.save()
    page = client_for(team.user("viewer")).get(url).content.decode()
    probe = page[page.index('id="probe"') :]
    assert "quick model's recipe on lite0+lite2" in probe and "over the multi-layer probe" in probe


def test_evaluation_page_says_how_the_blend_fared_against_the_probe_alone(team, client_for):
    model = make_model(team.project, mode="full")
    model.metrics["recipe"] = {
        "name": "multi-layer probe alone (no blend beat it on validation by more than one standard error)",
        "quick_alone": False,
        "val_accuracy": 0.9,
        "candidates": [],
        "selection_check": {
            "probe_val_accuracy": 0.9,
            "selected_val_accuracy": 0.9467,
            "cross_fitted_val_accuracy": 0.8933,
            "probe_kept_by": "cross_fitted",
        },
    }
    model.save()
    url = reverse("model_detail", kwargs={"project_id": team.project.pk, "model_id": model.pk})
    page = client_for(team.user("viewer")).get(url).content.decode()
    check = page[page.index('id="selection-check"') :]
    check = check[: check.index("</p>")]
    assert "probe 0.900" in check and "selected blend 0.947" in check and "0.893 with each half" in check
    assert "Chosen on other images" in check and "probe alone was kept" in check
    model.metrics["recipe"]["selection_check"]["probe_kept_by"] = None
    model.save()
    page = client_for(team.user("viewer")).get(url).content.decode()
    assert "so the blend is served" in page
    model.metrics["recipe"]["selection_check"] = None  # no blend was selected: nothing to check
    model.save()
    assert 'id="selection-check"' not in client_for(team.user("viewer")).get(url).content.decode()


def test_a_full_model_worse_than_the_quick_model_is_not_deployed_by_one_click(team, client_for):
    quick_v = make_model(team.project, mode="quick", deployed=True)
    full = make_model(team.project, mode="full")  # toy accuracy 0.600
    full.metrics["baseline_quick"] = {"accuracy": 0.9, "macro_f1": 0.9, "features": "lite0"}
    full.metrics["better_than_quick"] = False
    full.save()
    c = client_for(team.user("admin"))
    page = c.get(reverse("models_page", kwargs={"project_id": team.project.pk})).content.decode()
    assert "worse than quick" in page and "beats quick" not in page
    url = reverse("model_deploy", kwargs={"project_id": team.project.pk, "model_id": full.pk})
    r = c.post(url, follow=True)
    assert "not deployed" in r.content.decode()
    assert ModelVersion.objects.get(deployed=True).pk == quick_v.pk
    c.post(url, {"confirm_worse": "1"})
    assert ModelVersion.objects.get(deployed=True).pk == full.pk


def test_models_page_says_why_the_zero_shot_model_still_answers(team, client_for):
    from training import services

    make_model(team.project, mode="quick")
    zero = ModelVersion.objects.create(
        project=team.project,
        version=9,
        mode="zero_shot",
        label_names=["ants", "bees"],
        metrics={
            "accuracy": 0.95,
            "macro_f1": 0.95,
            "evaluation": "labeled_samples",
            "evaluation_detail": "all 20 labeled samples",
        },
    )
    url = reverse("models_page", kwargs={"project_id": team.project.pk})
    services.model_deploy(model=zero, pinned=False)
    for role in ("viewer", "owner"):
        page = client_for(team.user(role)).get(url).content.decode()
        assert 'id="zero-shot-kept"' in page and "(v9) answers" in page and "0.950" in page
    assert client_for(team.user("outsider")).get(url).status_code == 404
    services.model_deploy(model=zero, pinned=True)  # chosen by hand: nothing to explain
    assert 'id="zero-shot-kept"' not in client_for(team.user("owner")).get(url).content.decode()
