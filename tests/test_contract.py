"""The contract holds where it was written twice before: limits answer 413, only the media types a
view parses are advertised, downloads are binary, the schema speaks JSON on request, and the one
full training at a time is the database's rule."""

from __future__ import annotations

import base64

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from projects.roles import Role
from projects.tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests import conformance

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8UaHBgA0wMeAAg1MCAB4nAXgllso1AAAAAElFTkSuQmCC"
)


@pytest.fixture
def admin_api(db):
    project = ProjectFactory()
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.ADMIN)
    c = APIClient()
    c.force_authenticate(user)
    return project, c


def test_it_answers_413_beyond_the_item_limit_for_uploads_and_invoke(admin_api, settings):
    from labeling.models import Label, Sample

    settings.PICTOR_MAX_ITEMS = 3
    project, c = admin_api
    item = {"data": base64.b64encode(PNG).decode(), "labels": ["new-label"]}
    r = c.post(f"/api/v1/projects/{project.pk}/samples", {"items": [item] * 4}, format="json")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert "3" in r.json()["error"]["message"]
    assert not Sample.objects.filter(project=project).exists() and not Label.objects.filter(project=project).exists()
    r = c.post(f"/api/v1/projects/{project.pk}/invoke", {"items": [{"data": item["data"]}] * 4}, format="json")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    files = [("f.png", PNG)] * 4
    from django.core.files.uploadedfile import SimpleUploadedFile

    r = c.post(
        f"/api/v1/projects/{project.pk}/samples",
        {"file": [SimpleUploadedFile(n, d, content_type="image/png") for n, d in files]},
        format="multipart",
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = c.post(f"/api/v1/projects/{project.pk}/samples", {"items": [item] * 3}, format="json")
    assert r.status_code == 201


def test_it_refuses_form_bodies_where_only_json_is_parsed(admin_api):
    project, c = admin_api
    r = c.post(f"/api/v1/projects/{project.pk}/labels", {"name": "ants"}, format="multipart")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = c.post(f"/api/v1/projects/{project.pk}/labels", {"name": "ants"}, format="json")
    assert r.status_code == 201


def test_it_rejects_a_second_active_full_training_in_the_database(db):
    from training.models import TrainingJob

    project = ProjectFactory()
    TrainingJob.objects.create(project=project, mode="full")
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingJob.objects.create(project=project, mode="full", status="running")
    TrainingJob.objects.create(project=project, mode="quick")  # quick ones are not limited
    TrainingJob.objects.filter(project=project, mode="full").update(status="failed")
    TrainingJob.objects.create(project=project, mode="full")


def test_it_answers_409_for_a_second_full_training_through_the_api(admin_api, django_capture_on_commit_callbacks):
    project, c = admin_api
    assert c.post(f"/api/v1/projects/{project.pk}/trainings", {"mode": "full"}, format="json").status_code == 202
    r = c.post(f"/api/v1/projects/{project.pk}/trainings", {"mode": "full"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


def test_it_serves_the_schema_as_json_on_request(client):
    r = client.get("/api/v1/schema?format=json")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/") and "json" in r["Content-Type"]
    assert r.json()["openapi"].startswith("3.1")


def test_it_describes_only_real_media_types_and_binary_downloads():
    spec = conformance.document()
    paths = spec["paths"]
    labels = paths["/api/v1/projects/{project_id}/labels"]["post"]
    assert set(labels["requestBody"]["content"]) == {"application/json"} and labels["requestBody"]["required"]
    put = paths["/api/v1/projects/{project_id}/samples/{sample_id}/labels"]["put"]
    assert set(put["requestBody"]["content"]) == {"application/json"}
    for path, media in [
        ("/api/v1/projects/{project_id}/samples/{sample_id}/image", "image/*"),
        ("/api/v1/projects/{project_id}/samples/{sample_id}/thumbnail", "image/webp"),
        ("/api/v1/projects/{project_id}/export", "application/zip"),
    ]:
        assert paths[path]["get"]["responses"]["200"]["content"][media]["schema"] == {
            "type": "string",
            "format": "binary",
        }
    for item in paths.values():
        for op in item.values():
            assert "405" in op["responses"]
            if "requestBody" in op:
                assert "415" in op["responses"], op["operationId"]


def test_it_validates_nullable_objects_in_responses(admin_api):
    """A new project has no deployed model: `deployed_model: null` must conform (it did not under 3.0)."""
    project, c = admin_api
    r = c.get(f"/api/v1/projects/{project.pk}")
    assert r.status_code == 200 and r.json()["deployed_model"] is None
    assert conformance.response_errors(r) == []


def test_it_fails_a_response_the_schema_does_not_describe(admin_api):
    project, c = admin_api
    r = c.get(f"/api/v1/projects/{project.pk}")
    r.content = r.content.replace(b'"deployed_model":null', b'"deployed_model":"v1"')
    assert conformance.response_errors(r)
    with pytest.raises(conformance.NonConformingResponse):
        conformance.check(r)
