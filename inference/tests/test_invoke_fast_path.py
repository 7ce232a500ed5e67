"""The invoke request's fast path: few queries, each image decoded once, the key's use counted after the
answer, and nothing cached that could outlive a revoke or a deploy."""

from __future__ import annotations

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from PIL import Image

from config.after_response import AfterResponseMiddleware, after_response
from inference import services
from inference.tests.conftest import hym_files
from inference.tests.test_invoke import invoke_url, keyed, val
from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from projects import keys
from projects.models import KeyUsage, ProjectAPIKey
from training import runner
from training import services as training
from training.models import ModelVersion


@pytest.fixture
def invoke_key(deployed):
    return keys.api_key_create(project=deployed.project, name="app", scope="invoke")[1]


def _close(response):
    """response.close() as the test client does it: not closing the test's database connection."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def _post(key, project, data):
    return keyed(key).post(invoke_url(project), {"file": SimpleUploadedFile("a.jpg", data)}, format="multipart")


def test_it_answers_an_invoke_with_one_query_before_the_response(deployed, invoke_key):
    data = val("ants", 1)[0]
    _post(invoke_key, deployed.project, data)  # loads the predictor and the model's fields
    with CaptureQueriesContext(connection) as q:  # the test client closes the response itself
        r = _post(invoke_key, deployed.project, data)
        seen = [x["sql"] for x in q.captured_queries]
    assert r.status_code == 200
    # The key with its project and the deployed version's id (one query); then, after the answer, the
    # usage count in one transaction.
    selects = [s for s in seen if s.startswith("SELECT")]
    assert len(selects) == 1, seen
    assert "projects_project" in selects[0] and "training_modelversion" in selects[0]
    writes = [s for s in seen if s.startswith("UPDATE")]
    assert len(writes) == 2 and seen.index(writes[0]) > seen.index(selects[0])


def test_it_counts_a_keys_use_only_once_the_response_is_closed(deployed, invoke_key):
    from inference.api import InvokeView

    request = RequestFactory().post(
        invoke_url(deployed.project),
        {"file": SimpleUploadedFile("a.jpg", val("ants", 1)[0])},
        HTTP_AUTHORIZATION=f"Bearer {invoke_key}",
    )
    view = InvokeView.as_view()
    response = AfterResponseMiddleware(lambda req: view(req, project_id=str(deployed.project.pk)))(request)
    assert response.status_code == 200
    key = ProjectAPIKey.objects.get(name="app")
    assert key.request_count == 0 and not KeyUsage.objects.filter(api_key=key).exists()
    _close(response)  # what the WSGI server does once the last byte is sent
    key.refresh_from_db()
    assert key.request_count == 1 and key.last_used is not None
    assert KeyUsage.objects.get(api_key=key).count == 1


def test_after_response_work_runs_at_once_without_the_middleware_and_failures_are_logged(caplog):
    ran = []
    request = RequestFactory().get("/")
    after_response(request, lambda: ran.append("now"))
    assert ran == ["now"]

    def boom():
        raise RuntimeError("disk full")

    def view(req):
        after_response(req, boom)
        after_response(req, lambda: ran.append("later"))
        return HttpResponse("ok")

    response = AfterResponseMiddleware(view)(RequestFactory().get("/"))
    assert ran == ["now"]
    with caplog.at_level(logging.ERROR, logger="config.after_response"):
        _close(response)
    assert ran == ["now", "later"]  # one failure does not drop the rest
    assert "after-response work failed" in caplog.text


def test_a_revoked_key_stops_invoking_on_the_next_request(deployed, invoke_key):
    data = val("ants", 1)[0]
    assert _post(invoke_key, deployed.project, data).status_code == 200
    keys.api_key_revoke(key=ProjectAPIKey.objects.get(name="app"))
    r = _post(invoke_key, deployed.project, data)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_a_project_being_deleted_stops_its_keys_at_once(deployed, invoke_key):
    data = val("ants", 1)[0]
    assert _post(invoke_key, deployed.project, data).status_code == 200
    type(deployed.project).objects.filter(pk=deployed.project.pk).update(deleting=True)
    assert _post(invoke_key, deployed.project, data).status_code == 404


def test_a_deploy_takes_effect_on_the_next_invoke(deployed, invoke_key):
    project = deployed.project
    data = val("bees", 1)[0]
    v1 = ModelVersion.objects.get(project=project, deployed=True)
    first = _post(invoke_key, project, data).json()
    assert first["model"]["id"] == str(v1.pk)
    for path in hym_files("val", "bees", 4, offset=30):
        sample_labels_set(sample=make_sample(project, data=path.read_bytes()), names=["wasps"], user=None)
    training.embeddings_compute(project_id=project.pk)
    assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
    v2 = ModelVersion.objects.get(project=project, deployed=True)
    assert v2.pk != v1.pk
    second = _post(invoke_key, project, data).json()
    assert second["model"]["id"] == str(v2.pk) and {x["label"] for x in second["labels"]} == {"ants", "bees", "wasps"}
    training.model_deploy(model=v1)  # back: both versions' fields are cached in this process now
    third = _post(invoke_key, project, data).json()
    assert third["model"]["id"] == str(v1.pk) and {x["label"] for x in third["labels"]} == {"ants", "bees"}


def test_a_deleted_deployed_version_answers_no_model_not_a_stale_one(deployed, invoke_key):
    project = deployed.project
    data = val("ants", 1)[0]
    assert _post(invoke_key, project, data).status_code == 200
    ModelVersion.objects.filter(project=project).delete()
    r = _post(invoke_key, project, data)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_model"


def test_the_model_answers_with_the_projects_current_settings(deployed, invoke_key):
    """The cached version fields never carry a stale project: capture follows the project's setting now."""
    project = deployed.project
    data = val("ants", 1)[0]
    assert "sample_id" not in _post(invoke_key, project, data).json()
    type(project).objects.filter(pk=project.pk).update(capture="all")
    assert "sample_id" in _post(invoke_key, project, data).json()


def test_a_version_named_by_id_must_belong_to_the_project(deployed):
    from projects.tests.factories import ProjectFactory

    other = ProjectFactory()
    v1 = ModelVersion.objects.get(project=deployed.project, deployed=True)
    with pytest.raises(services.UnknownModel):
        services.model_for_invoke(project=other, model_id=str(v1.pk))
    assert services.model_for_invoke(project=deployed.project, model_id=str(v1.pk)).pk == v1.pk


def test_an_invoke_over_the_api_decodes_each_image_once(deployed, invoke_key, monkeypatch):
    data = val("ants", 1)[0]
    _post(invoke_key, deployed.project, data)  # warm: the predictor loads outside the count
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **kw: opened.append(1) or real_open(*a, **kw))
    r = _post(invoke_key, deployed.project, data)
    assert r.status_code == 200
    assert len(opened) == 1


def test_a_bad_image_still_answers_the_envelope(deployed, invoke_key):
    r = _post(invoke_key, deployed.project, b"\xff\xd8\xff\xe0 not really a jpeg")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    key = ProjectAPIKey.objects.get(name="app")
    assert key.request_count == 1  # counted all the same, once the answer was out


def test_it_reads_the_deployed_id_with_the_key_and_none_when_nothing_is_deployed(deployed, invoke_key):
    project = deployed.project
    v1 = ModelVersion.objects.get(project=project, deployed=True)
    with CaptureQueriesContext(connection) as q:
        key = services.invoke_key_from_secret(secret=invoke_key)
    assert len(q.captured_queries) == 1
    assert key.deployed_model_id == v1.pk and key.project.pk == project.pk
    ModelVersion.objects.filter(pk=v1.pk).update(deployed=False)
    assert services.invoke_key_from_secret(secret=invoke_key).deployed_model_id is None
    r = _post(invoke_key, project, val("ants", 1)[0])
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_model"
    with pytest.raises(ProjectAPIKey.DoesNotExist):
        services.invoke_key_from_secret(secret=invoke_key.partition(".")[0] + ".wrong")


def test_shared_output_serializers_render_what_a_fresh_one_does(deployed, invoke_key):
    from config.api import render
    from inference.serializers import FramesResultSerializer, SeriesResultSerializer, render_answer
    from training.serializers import SingleLabelResultSerializer

    body = _post(invoke_key, deployed.project, val("ants", 1)[0]).json()
    assert render(SingleLabelResultSerializer, body) == SingleLabelResultSerializer(body).data
    frames = {"frames": [{"timeMs": 0, **body}]}
    assert render_answer(frames) == FramesResultSerializer(frames).data
    series = keyed(invoke_key).post(
        invoke_url(deployed.project) + "?format=series",
        {"file": SimpleUploadedFile("a.jpg", val("bees", 1)[0])},
        format="multipart",
    )
    assert series.status_code == 200 and "series" in series.json()
    assert render_answer(series.json()) == SeriesResultSerializer(series.json()).data
