"""Invoke is bounded per request: batches of PICTOR_INVOKE_BATCH, PICTOR_MAX_ITEMS and PICTOR_MAX_EXPLAIN."""

import base64

from inference import predictors
from inference.tests.test_invoke import invoke_key, invoke_url, keyed, val  # noqa: F401  (fixture)


def _items(n):
    images = (val("ants", 4) + val("bees", 4)) * ((n + 7) // 8)
    return [{"data": base64.b64encode(b).decode()} for b in images[:n]]


def test_it_decodes_and_runs_invoke_in_bounded_batches(deployed, invoke_key, settings, monkeypatch):  # noqa: F811
    settings.PICTOR_INVOKE_BATCH = 3
    sizes = []
    real = predictors.predict

    def spy(model, images):
        sizes.append(len(images))
        return real(model, images)

    monkeypatch.setattr(predictors, "predict", spy)
    r = keyed(invoke_key).post(invoke_url(deployed.project), {"items": _items(8)}, format="json")
    assert r.status_code == 200, r.content
    assert len(r.json()["results"]) == 8 and sizes == [3, 3, 2]
    # Same answers as one big batch.
    settings.PICTOR_INVOKE_BATCH = 64
    whole = keyed(invoke_key).post(invoke_url(deployed.project), {"items": _items(8)}, format="json").json()
    assert [x["label"] for x in whole["results"]] == [x["label"] for x in r.json()["results"]]


def test_it_refuses_explain_beyond_its_limit_with_413(deployed, invoke_key, settings):  # noqa: F811
    settings.PICTOR_MAX_EXPLAIN = 2
    r = keyed(invoke_key).post(invoke_url(deployed.project, "?explain=true"), {"items": _items(3)}, format="json")
    assert r.status_code == 413
    body = r.json()["error"]
    assert body["code"] == "too_large" and "PICTOR_MAX_EXPLAIN" in body["message"] and "2" in body["message"]
    assert (
        keyed(invoke_key)
        .post(invoke_url(deployed.project, "?explain=true"), {"items": _items(2)}, format="json")
        .status_code
        == 200
    )


def test_it_refuses_more_images_than_the_item_limit(deployed, invoke_key, settings):  # noqa: F811
    settings.PICTOR_MAX_ITEMS = 3
    r = keyed(invoke_key).post(invoke_url(deployed.project), {"items": _items(4)}, format="json")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_it_lets_only_writers_capture(team):
    import pytest
    from django.core.exceptions import PermissionDenied

    from inference.services import capture_check
    from projects.access import ProjectAccess
    from projects.api_auth import KEY_ROLE
    from projects.models import ProjectAPIKey

    for role in ("labeler", "admin", "owner", KEY_ROLE[ProjectAPIKey.Scope.FULL]):
        capture_check(access=ProjectAccess(project=team.project, role=role))
    for role in ("viewer", KEY_ROLE[ProjectAPIKey.Scope.INVOKE]):
        with pytest.raises(PermissionDenied, match="labeler role or an API key with the full scope"):
            capture_check(access=ProjectAccess(project=team.project, role=role))
