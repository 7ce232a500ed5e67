"""The API page's try-it panel: a member's session invokes the deployed (or zero-shot) model."""

import pytest
from django.urls import reverse

from conftest import datasets_dir
from labeling.services import label_create
from labeling.tests.factories import jpeg_bytes
from labeling.models import Sample
from training import zeroshot

HYM = datasets_dir() / "hymenoptera_data"


@pytest.fixture
def zero_shot(team):
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    for name in ("ants", "bees"):
        label_create(project=team.project, name=name)
    zeroshot.zero_shot_sync(project_id=team.project.pk)
    return team


def _ant() -> bytes:
    return sorted((HYM / "val" / "ants").glob("*.jpg"))[0].read_bytes()


def _try(client, team, data: bytes, *, json: bool = True):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("api_try", kwargs={"project_id": team.project.pk})
    headers = {"HTTP_ACCEPT": "application/json"} if json else {}
    return client.post(url, {"file": SimpleUploadedFile("ant.jpg", data, "image/jpeg")}, **headers)


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_it_answers_a_member_with_the_deployed_model_without_a_key(zero_shot, client_for, role):
    r = _try(client_for(zero_shot.user(role)), zero_shot, _ant())
    body = r.json()
    assert r.status_code == 200 and body["label"] == "ants" and body["model"]["mode"] == "zero_shot"
    assert len(body["labels"]) == 2 and not Sample.objects.filter(project=zero_shot.project).exists()  # not stored


def test_it_hides_the_project_from_an_outsider_and_asks_strangers_to_sign_in(zero_shot, client_for):
    assert _try(client_for(zero_shot.user("outsider")), zero_shot, _ant()).status_code == 404
    r = _try(client_for(None), zero_shot, _ant())
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_it_answers_without_javascript_on_the_api_page(zero_shot, client_for):
    r = _try(client_for(zero_shot.user("labeler")), zero_shot, _ant(), json=False)
    html = r.content.decode()
    assert r.status_code == 200 and 'id="try-result"' in html and "<strong>ants</strong>" in html


def test_it_says_so_when_nothing_is_deployed_or_the_file_is_not_an_image(team, client_for):
    c = client_for(team.user("admin"))
    r = _try(c, team, jpeg_bytes(1))
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_model"
    page = c.get(reverse("api_page", kwargs={"project_id": team.project.pk})).content.decode()
    assert "data-try-it" in page and "Nothing is deployed yet" in page


def test_it_refuses_a_file_that_is_not_an_image(zero_shot, client_for):
    r = _try(client_for(zero_shot.user("owner")), zero_shot, b"not an image at all")
    assert r.status_code in (400, 415) and r.json()["error"]["code"] in ("invalid_image", "unsupported_media_type")
    url = reverse("api_try", kwargs={"project_id": zero_shot.project.pk})
    r = client_for(zero_shot.user("owner")).post(url, {}, HTTP_ACCEPT="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
    assert client_for(zero_shot.user("owner")).get(url).status_code == 405
