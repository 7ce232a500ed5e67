import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.test import APIClient

from inference.tests.conftest import hym_files
from labeling.models import Sample
from labeling.tests import badfiles
from projects import keys
from projects.models import KeyUsage, ProjectAPIKey
from projects.tests.factories import ProjectFactory
from training.models import ModelVersion


def keyed(key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return c


def invoke_url(project, query=""):
    return f"/api/v1/projects/{project.pk}/invoke{query}"


@pytest.fixture
def invoke_key(deployed):
    return keys.api_key_create(project=deployed.project, name="app", scope="invoke")[1]


@pytest.fixture
def full_key(deployed):
    return keys.api_key_create(project=deployed.project, name="ops", scope="full")[1]


def val(cls, n, offset=0):
    return [p.read_bytes() for p in hym_files("val", cls, n, offset)]


def test_single_image_answers_label_ranked_confidences_and_model(deployed, invoke_key):
    r = keyed(invoke_key).post(
        invoke_url(deployed.project), {"file": SimpleUploadedFile("a.jpg", val("ants", 1)[0])}, format="multipart"
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"label", "confidence", "labels", "model"}
    assert [x["label"] for x in body["labels"]][0] == body["label"]
    assert sum(x["confidence"] for x in body["labels"]) == pytest.approx(1, abs=1e-4)
    assert body["model"]["version"] == ModelVersion.objects.get(deployed=True).version


def test_batch_is_in_order_and_sensible_on_held_out_images(deployed, invoke_key):
    images = val("ants", 6) + val("bees", 6)
    items = [{"data": base64.b64encode(b).decode()} for b in images]
    r = keyed(invoke_key).post(invoke_url(deployed.project, "?top_k=1"), {"items": items}, format="json")
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 12 and all(len(x["labels"]) == 1 for x in results)
    correct = sum(x["label"] == ("ants" if i < 6 else "bees") for i, x in enumerate(results))
    assert correct >= 9  # 20 training labels on lite0 features; chance is 6


def test_series_format_with_pretrained_labels(deployed, invoke_key):
    data = base64.b64encode(val("bees", 1)[0]).decode()
    r = keyed(invoke_key).post(
        invoke_url(deployed.project, "?format=series&pretrained=3"), {"data": data}, format="json"
    )
    series = r.json()["series"]
    library = [e for e in series if "libraryId" in e]
    pretrained = [e for e in series if "libraryId" not in e]
    assert len(library) == 2 and len(pretrained) == 3
    assert library[0]["libraryId"] == str(deployed.project.pk) == library[0]["object"]["libraryId"]
    assert library[0]["object"]["boundingPoly"] == [
        {"x": 0, "y": 0},
        {"x": 1, "y": 0},
        {"x": 1, "y": 1},
        {"x": 0, "y": 1},
    ]
    assert {"startTimeMs", "stopTimeMs", "object"} <= set(library[0]) and library[0]["object"]["type"] == "object"
    direct = keyed(invoke_key).post("/api/v1/pretrained/imagenet/invoke?top_k=3", {"data": data}, format="json").json()
    assert [e["object"]["label"] for e in pretrained] == [x["label"] for x in direct["labels"]]


def test_capture_stores_the_image_as_an_unlabeled_sample_once(deployed, full_key):
    data = base64.b64encode(val("ants", 1, offset=20)[0]).decode()
    c = keyed(full_key)
    first = c.post(invoke_url(deployed.project, "?capture=true&format=series"), {"data": data}, format="json").json()
    second = c.post(invoke_url(deployed.project, "?capture=true"), {"data": data}, format="json").json()
    assert first["sample_id"] == second["sample_id"]
    sample = Sample.objects.get(pk=first["sample_id"])
    assert sample.source == "capture" and sample.labeled_at is None
    assert first["series"][0]["object"]["uri"].endswith(f"/samples/{sample.pk}/image")


def test_it_refuses_capture_on_request_to_invoke_keys_and_viewers(deployed, invoke_key, client_for):
    """?capture=true writes a sample: labelers and full keys only; the admin's setting captures the rest."""
    data = base64.b64encode(val("ants", 1, offset=25)[0]).decode()
    r = keyed(invoke_key).post(invoke_url(deployed.project, "?capture=true"), {"data": data}, format="json")
    assert r.status_code == 403 and "capture setting" in r.json()["error"]["message"]
    viewer = APIClient()
    viewer.force_authenticate(deployed.user("viewer"))
    assert viewer.post(invoke_url(deployed.project, "?capture=true"), {"data": data}, format="json").status_code == 403
    assert viewer.post(invoke_url(deployed.project), {"data": data}, format="json").status_code == 200
    assert not Sample.objects.filter(project=deployed.project, source="capture").exists()
    labeler = APIClient()
    labeler.force_authenticate(deployed.user("labeler"))
    body = labeler.post(invoke_url(deployed.project, "?capture=true"), {"data": data}, format="json").json()
    assert Sample.objects.get(pk=body["sample_id"]).source == "capture"


def test_capture_uncertain_setting(deployed, invoke_key):
    deployed.project.capture, deployed.project.capture_threshold = "uncertain", 0.999999
    deployed.project.save()
    data = base64.b64encode(val("ants", 1, offset=30)[0]).decode()
    body = keyed(invoke_key).post(invoke_url(deployed.project), {"data": data}, format="json").json()
    assert "sample_id" in body  # below the (extreme) threshold, so kept


def test_explain_adds_a_heatmap_png(deployed, invoke_key):
    data = base64.b64encode(val("ants", 1)[0]).decode()
    body = keyed(invoke_key).post(invoke_url(deployed.project, "?explain=true"), {"data": data}, format="json").json()
    png = base64.b64decode(body["explanation"]["heatmap_png"])
    assert png[:4] == b"\x89PNG" and body["explanation"]["label"] == body["label"]


def test_model_param_and_no_model(deployed, invoke_key, full_key):
    model = ModelVersion.objects.get(deployed=True)
    data = base64.b64encode(val("ants", 1)[0]).decode()
    c = keyed(invoke_key)
    assert c.post(invoke_url(deployed.project, f"?model={model.pk}"), {"data": data}, format="json").json()["model"][
        "id"
    ] == str(model.pk)
    r = c.post(
        invoke_url(deployed.project, "?model=00000000-0000-0000-0000-000000000000"), {"data": data}, format="json"
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    ModelVersion.objects.update(deployed=False)
    r = c.post(invoke_url(deployed.project), {"data": data}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_model"


@pytest.mark.parametrize("bad", [s for s in badfiles.bad_image_samples()], ids=lambda s: s.name)
def test_bad_images_on_invoke_get_their_code_in_the_envelope(deployed, invoke_key, bad):
    r = keyed(invoke_key).post(invoke_url(deployed.project), {"file": [bad.upload()]}, format="multipart")
    assert r.status_code == bad.status and r.json()["error"]["code"] == bad.code


def test_a_mixed_invoke_batch_is_207(deployed, invoke_key):
    items = [{"data": base64.b64encode(val("ants", 1)[0]).decode()}, {"data": base64.b64encode(b"nope").decode()}]
    r = keyed(invoke_key).post(invoke_url(deployed.project), {"items": items}, format="json")
    assert r.status_code == 207
    ok, bad = r.json()["results"]
    assert "label" in ok and bad["error"]["code"] == "unsupported_media_type"


def test_key_scopes_binding_and_revocation(deployed, invoke_key, full_key):
    project = deployed.project
    other = ProjectFactory()
    inv, full = keyed(invoke_key), keyed(full_key)
    assert inv.get(f"/api/v1/projects/{project.pk}").status_code == 200
    r = inv.get(f"/api/v1/projects/{project.pk}/samples")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert full.get(f"/api/v1/projects/{project.pk}/samples").status_code == 200
    r = full.get(f"/api/v1/projects/{other.pk}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert full.post(invoke_url(other), {"data": "aGk="}, format="json").status_code == 404
    keys.api_key_revoke(key=ProjectAPIKey.objects.get(name="ops"))
    r = full.get(f"/api/v1/projects/{project.pk}")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert keyed("garbage").get(f"/api/v1/projects/{project.pk}").status_code == 401


def test_key_usage_is_counted_per_day(deployed, invoke_key):
    c = keyed(invoke_key)
    for _ in range(3):
        c.get(f"/api/v1/projects/{deployed.project.pk}")
    key = ProjectAPIKey.objects.get(name="app")
    assert key.request_count == 3 and key.last_used is not None
    assert KeyUsage.objects.get(api_key=key).count == 3


def test_throttling_answers_429_with_retry_after(deployed, invoke_key, settings):
    settings.PICTOR_API_RATE = "2/min"
    c = keyed(invoke_key)
    codes = [c.get(f"/api/v1/projects/{deployed.project.pk}").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.get(f"/api/v1/projects/{deployed.project.pk}")
    assert r.json()["error"]["code"] == "throttled" and int(r["Retry-After"]) > 0


def test_pretrained_imagenet_invoke(team):
    key = keys.api_key_create(project=team.project, name="k", scope="invoke")[1]
    items = [{"data": base64.b64encode(b).decode()} for b in val("bees", 8)]
    r = keyed(key).post("/api/v1/pretrained/imagenet/invoke?top_k=5", {"items": items}, format="json")
    assert r.status_code == 200
    hits = sum("bee" in [x["label"] for x in res["labels"]] for res in r.json()["results"])
    assert hits >= 5  # ImageNet's "bee" among the top 5 for most of 8 bee photos
    data = items[0]["data"]
    assert APIClient().post("/api/v1/pretrained/imagenet/invoke", {"data": data}, format="json").status_code == 401


def test_sample_detail_carries_the_deployed_prediction(deployed, full_key):
    sample = Sample.objects.filter(project=deployed.project).first()
    body = keyed(full_key).get(f"/api/v1/projects/{deployed.project.pk}/samples/{sample.pk}").json()
    assert body["prediction"]["label"] in ("ants", "bees")


def test_cli_creates_and_revokes_keys(team, capsys):
    call_command("apikey", "create", "--project", str(team.project.pk), "--scope", "invoke", "--name", "cli")
    key = capsys.readouterr().out.strip()
    assert keyed(key).get(f"/api/v1/projects/{team.project.pk}").status_code == 200
    prefix = key.split(".")[0]
    call_command("apikey", "revoke", "--project", str(team.project.pk), "--prefix", prefix)
    assert keyed(key).get(f"/api/v1/projects/{team.project.pk}").status_code == 401
