"""A full model worse than the quick model on the same split is never deployed without a human's override."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from training import services
from training.models import ModelVersion
from training.tests.factories import make_model


@pytest.fixture
def worse(team):
    quick_v = make_model(team.project, mode="quick", deployed=True)
    full = make_model(team.project, mode="full")  # toy accuracy 0.600
    full.metrics["baseline_quick"] = {"accuracy": 0.9, "macro_f1": 0.9, "features": "lite0"}
    full.save()
    return quick_v, full


def _api(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_it_refuses_a_worse_full_model_in_the_service(worse):
    quick_v, full = worse
    with pytest.raises(services.WorseThanQuick, match="below the quick model's 0.900"):
        services.model_deploy(model=full)
    assert ModelVersion.objects.get(deployed=True).pk == quick_v.pk
    services.model_deploy(model=full, force=True)
    assert ModelVersion.objects.get(deployed=True).pk == full.pk


def test_it_deploys_a_full_model_that_beats_quick_without_asking(team):
    make_model(team.project, mode="quick", deployed=True)
    full = make_model(team.project, mode="full")
    full.metrics["baseline_quick"] = {"accuracy": 0.5, "macro_f1": 0.5, "features": "lite0"}
    full.save()
    assert services.model_deploy(model=full).deployed


def test_it_answers_409_in_the_api_and_deploys_with_force_for_an_admin(team, worse):
    quick_v, full = worse
    url = f"/api/v1/projects/{team.project.pk}/models/{full.pk}/deploy"
    admin = _api(team.user("admin"))
    listed = {m["id"]: m for m in admin.get(f"/api/v1/projects/{team.project.pk}/models").json()["results"]}
    assert listed[str(full.pk)]["worse_than_quick"] is True and listed[str(quick_v.pk)]["worse_than_quick"] is False
    r = admin.post(url)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert "0.600" in r.json()["error"]["message"]
    assert ModelVersion.objects.get(deployed=True).pk == quick_v.pk
    r = admin.post(url, {"force": False}, format="json")
    assert r.status_code == 409
    assert admin.post(url, {"force": "maybe"}, format="json").status_code == 400
    assert ModelVersion.objects.get(deployed=True).pk == quick_v.pk
    r = admin.post(url, {"force": True}, format="json")
    assert r.status_code == 200 and r.json()["deployed"] is True
    assert ModelVersion.objects.get(deployed=True).pk == full.pk


@pytest.mark.parametrize("role, status", [("owner", 200), ("labeler", 403), ("viewer", 403), ("outsider", 404)])
def test_it_lets_only_admins_force(team, worse, role, status):
    _, full = worse
    url = f"/api/v1/projects/{team.project.pk}/models/{full.pk}/deploy"
    assert _api(team.user(role)).post(url, {"force": True}, format="json").status_code == status


def test_it_refuses_on_the_page_without_the_confirmation(team, worse, client_for):
    quick_v, full = worse
    c = client_for(team.user("admin"))
    url = reverse("model_deploy", kwargs={"project_id": team.project.pk, "model_id": full.pk})
    assert "not deployed" in c.post(url, follow=True).content.decode()
    assert ModelVersion.objects.get(deployed=True).pk == quick_v.pk
    c.post(url, {"confirm_worse": "1"})
    assert ModelVersion.objects.get(deployed=True).pk == full.pk
