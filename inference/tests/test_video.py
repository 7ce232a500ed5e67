"""Video in invoke (shared/API.md "Video"): real videos built from hymenoptera photos, 3 s of ants then
3 s of bees at 5 fps, classified by a deployed quick model trained on those classes."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from inference.tests.conftest import hym_files
from labeling.models import Sample
from labeling.tests import videos as tv
from projects import keys

pytestmark = pytest.mark.slow


def keyed(key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return c


def url(project, query=""):
    return f"/api/v1/projects/{project.pk}/invoke{query}"


@pytest.fixture(scope="module")
def clip() -> bytes:
    """3 s of ants, then 3 s of bees (the deployed model's training photos), 5 fps, 224x168 MP4."""
    return tv.ants_then_bees(split="train", photos=10, seconds=3, fps=5)


@pytest.fixture
def invoke_key(deployed):
    return keys.api_key_create(project=deployed.project, name="app", scope="invoke")[1]


def post_video(client, project, data, query="", name="clip.mp4", content_type="video/mp4"):
    return client.post(url(project, query), {"file": SimpleUploadedFile(name, data, content_type=content_type)})


def test_it_answers_label_segments_with_the_boundary_within_one_frame_of_3000_ms(deployed, invoke_key, clip):
    r = post_video(keyed(invoke_key), deployed.project, clip, "?format=series&fps=5")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["video"]["frames"] == 30 and body["video"]["duration_ms"] == 6000 and body["video"]["fps"] == 5
    ants, bees = body["series"]  # one segment each: the model tells these photos apart
    interval = 200
    assert ants["object"]["label"] == "ants" and bees["object"]["label"] == "bees"
    assert ants["startTimeMs"] == 0 and bees["stopTimeMs"] == 6000 and ants["stopTimeMs"] == bees["startTimeMs"]
    assert abs(bees["startTimeMs"] - 3000) <= interval
    for entry in body["series"]:
        assert entry["libraryId"] == str(deployed.project.pk) == entry["object"]["libraryId"]
        assert entry["object"]["boundingPoly"][2] == {"x": 1, "y": 1} and 0.5 < entry["object"]["confidence"] <= 1
    # Nothing is stored: no capture was asked for and the project's setting is off.
    assert not Sample.objects.filter(project=deployed.project).exclude(source="upload").exists()


def test_segment_confidence_is_the_mean_of_its_frames(deployed, invoke_key, clip):
    c = keyed(invoke_key)
    frames = post_video(c, deployed.project, clip, "?format=frames&fps=5").json()["frames"]
    series = post_video(c, deployed.project, clip, "?format=series&fps=5").json()["series"]
    assert [f["timeMs"] for f in frames] == list(range(0, 6000, 200))
    for entry in series:
        inside = [f for f in frames if entry["startTimeMs"] <= f["timeMs"] < entry["stopTimeMs"]]
        assert inside and all(f["label"] == entry["object"]["label"] for f in inside)
        mean = sum(f["confidence"] for f in inside) / len(inside)
        assert entry["object"]["confidence"] == pytest.approx(mean, abs=1e-5)
    covered = sorted((e["startTimeMs"], e["stopTimeMs"]) for e in series)
    assert covered[0][0] == 0 and covered[-1][1] == 6000
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # single-label: segments tile the video


def test_frames_are_the_default_answer_and_fps_sets_the_sampling(deployed, invoke_key, clip):
    r = post_video(keyed(invoke_key), deployed.project, clip, "?top_k=1")
    assert r.status_code == 200, r.content
    frames = r.json()["frames"]
    assert [f["timeMs"] for f in frames] == [0, 1000, 2000, 3000, 4000, 5000]
    assert all(len(f["labels"]) == 1 and f["model"]["version"] == 1 for f in frames)
    assert sum(f["label"] == "ants" for f in frames[:3]) + sum(f["label"] == "bees" for f in frames[3:]) >= 5
    r = post_video(keyed(invoke_key), deployed.project, clip, "?fps=0.5")
    assert [f["timeMs"] for f in r.json()["frames"]] == [0, 2000, 4000]


@pytest.mark.parametrize("container", ["webm", "matroska", "mov"])
def test_it_reads_webm_mkv_and_mov_by_their_content(deployed, invoke_key, container):
    data = tv.ants_then_bees(seconds=1, fps=5, container=container, size=(96, 72))
    # The file name says nothing: the bytes decide.
    r = post_video(keyed(invoke_key), deployed.project, data, "?fps=5", name="upload.bin", content_type="")
    assert r.status_code == 200, r.content
    assert [f["timeMs"] for f in r.json()["frames"]] == [0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800]


def test_a_raw_video_body_and_base64_json_work_too(deployed, invoke_key, clip):
    c = keyed(invoke_key)
    r = c.post(url(deployed.project, "?format=series"), data=clip, content_type="video/mp4")
    assert r.status_code == 200, r.content
    assert r.json()["video"]["frames"] == 6
    r = c.post(url(deployed.project), {"data": base64.b64encode(clip).decode()}, format="json")
    assert r.status_code == 200 and len(r.json()["frames"]) == 6


def test_an_image_and_a_video_in_one_request_answer_in_order(deployed, invoke_key, clip):
    photo = hym_files("val", "ants", 1)[0].read_bytes()
    r = keyed(invoke_key).post(
        url(deployed.project, "?format=frames"),
        {"file": [SimpleUploadedFile("a.jpg", photo), SimpleUploadedFile("c.mp4", clip)]},
    )
    assert r.status_code == 200, r.content
    image, video = r.json()["results"]
    assert [f["timeMs"] for f in image["frames"]] == [0] and "video" not in image
    assert len(video["frames"]) == 6 and video["video"]["duration_ms"] == 6000


@pytest.mark.parametrize(
    "data, name",
    [
        (b"this is plain text, not a film\n" * 20, "notes.mp4"),
        (None, "photo.mp4"),  # a real JPEG, named as a video
    ],
)
def test_it_answers_invalid_video_for_a_file_that_only_claims_to_be_one(deployed, invoke_key, data, name):
    data = data or hym_files("val", "ants", 1)[0].read_bytes()
    r = post_video(keyed(invoke_key), deployed.project, data, name=name, content_type="application/octet-stream")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video", r.content
    r = keyed(invoke_key).post(url(deployed.project), data=data, content_type="video/mp4")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"


def test_it_answers_invalid_video_for_truncated_and_corrupt_files(deployed, invoke_key, clip):
    c = keyed(invoke_key)
    cut = clip[: len(clip) // 2]  # the index (moov) is at the end: gone
    assert post_video(c, deployed.project, cut).json()["error"]["code"] == "invalid_video"
    webm = tv.ants_then_bees(seconds=2, fps=5, container="webm", size=(96, 72))
    r = post_video(c, deployed.project, webm[: len(webm) // 2], name="clip.webm")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"
    assert "truncated" in r.json()["error"]["message"]
    head = clip[:12] + b"\x00" * 2000  # an MP4 signature over garbage
    r = post_video(c, deployed.project, head)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"


def test_it_answers_413_over_the_duration_frame_pixel_and_byte_limits(deployed, invoke_key, clip, settings):
    c = keyed(invoke_key)
    settings.PICTOR_VIDEO_MAX_SECONDS = 5
    r = post_video(c, deployed.project, clip)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large" and "6.0 s" in r.json()["error"]["message"]
    settings.PICTOR_VIDEO_MAX_SECONDS = 600
    settings.PICTOR_VIDEO_MAX_FRAMES = 20
    r = post_video(c, deployed.project, clip, "?fps=5")
    assert r.status_code == 413 and "30 frames" in r.json()["error"]["message"]
    assert post_video(c, deployed.project, clip, "?fps=2").status_code == 200  # 12 frames fit
    settings.PICTOR_VIDEO_MAX_PIXELS = 224 * 168 - 1
    r = post_video(c, deployed.project, clip)
    assert r.status_code == 413 and "pixels" in r.json()["error"]["message"]
    settings.PICTOR_VIDEO_MAX_PIXELS = 3840 * 2160
    settings.PICTOR_VIDEO_MAX_BYTES = len(clip) - 1
    assert post_video(c, deployed.project, clip).status_code == 413
    r = c.post(url(deployed.project), data=clip, content_type="video/mp4")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_it_refuses_two_videos_in_one_request(deployed, invoke_key, clip):
    files = [SimpleUploadedFile("a.mp4", clip), SimpleUploadedFile("b.mp4", clip)]
    r = keyed(invoke_key).post(url(deployed.project), {"file": files})
    assert r.status_code == 413 and r.json()["error"]["fields"] == {"videos": ["at most 1"]}


@pytest.mark.parametrize("fps", ["0", "-1", "11", "abc", "0.001"])
def test_fps_out_of_range_is_400(deployed, invoke_key, clip, fps):
    r = post_video(keyed(invoke_key), deployed.project, clip, f"?fps={fps}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid" and "fps" in r.json()["error"]["fields"]


def test_the_fps_maximum_is_a_setting(deployed, invoke_key, clip, settings):
    settings.PICTOR_VIDEO_MAX_FPS = 2
    assert post_video(keyed(invoke_key), deployed.project, clip, "?fps=3").status_code == 400
    assert post_video(keyed(invoke_key), deployed.project, clip, "?fps=2").status_code == 200


def test_explain_is_for_images_only(deployed, invoke_key, clip):
    r = post_video(keyed(invoke_key), deployed.project, clip, "?explain=true")
    assert r.status_code == 400 and r.json()["error"]["fields"] == {"explain": ["images only"]}


def test_capture_stores_the_sampled_frames_once_with_their_video_and_time(deployed, client_for, clip):
    labeler = client_for(deployed.user("labeler"))
    r = post_video(labeler, deployed.project, clip, "?capture=true&format=series")
    assert r.status_code == 200, r.content
    body = r.json()
    stored = Sample.objects.filter(project=deployed.project, video_sha256=body["video"]["sha256"])
    assert sorted(stored.values_list("video_time_ms", flat=True)) == [0, 1000, 2000, 3000, 4000, 5000]
    assert set(stored.values_list("source", flat=True)) == {"capture"}
    assert all(e["object"]["uri"].startswith("http://testserver/api/v1/") for e in body["series"])
    again = post_video(labeler, deployed.project, clip, "?capture=true").json()
    assert stored.count() == 6  # deduplicated by content, as images are
    assert {f["sample_id"] for f in again["frames"]} == {str(pk) for pk in stored.values_list("pk", flat=True)}


def test_capture_needs_a_labeler_and_the_project_setting_captures_all(deployed, client_for, invoke_key, clip):
    viewer = client_for(deployed.user("viewer"))
    assert post_video(viewer, deployed.project, clip, "?capture=true").status_code == 403
    assert post_video(keyed(invoke_key), deployed.project, clip, "?capture=true").status_code == 403
    outsider = client_for(deployed.user("outsider"))
    assert post_video(outsider, deployed.project, clip).status_code == 404
    assert not Sample.objects.filter(project=deployed.project, source="capture").exists()
    deployed.project.capture = "all"
    deployed.project.save()
    frames = post_video(keyed(invoke_key), deployed.project, clip).json()["frames"]
    assert all("sample_id" in f for f in frames)
    assert Sample.objects.filter(project=deployed.project, source="capture").count() == 6


def test_a_corrupt_video_stores_nothing_even_with_capture(deployed, client_for):
    webm = tv.ants_then_bees(seconds=2, fps=5, container="webm", size=(96, 72))
    deployed.project.capture = "all"
    deployed.project.save()
    r = post_video(client_for(deployed.user("owner")), deployed.project, webm[: len(webm) // 2], name="c.webm")
    assert r.status_code == 400
    assert not Sample.objects.filter(project=deployed.project, source="capture").exists()


def test_video_series_with_pretrained_labels(deployed, invoke_key, clip):
    series = post_video(keyed(invoke_key), deployed.project, clip, "?format=series&pretrained=2").json()["series"]
    pretrained = [e for e in series if "libraryId" not in e]
    assert pretrained and all(0 <= e["startTimeMs"] < e["stopTimeMs"] <= 6000 for e in pretrained)


def test_the_imagenet_endpoint_refuses_videos(deployed, invoke_key, clip):
    r = keyed(invoke_key).post("/api/v1/pretrained/imagenet/invoke", {"file": SimpleUploadedFile("c.mp4", clip)})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


def test_the_api_page_shows_how_to_send_a_video(team, client_for):
    from django.urls import reverse

    page_url = reverse("api_page", kwargs={"project_id": team.project.pk})
    for role in ("owner", "viewer"):
        html = client_for(team.user(role)).get(page_url).content.decode()
        assert 'id="snippet-video"' in html and "fps=2&amp;format=series" in html and "invalid_video" in html
    assert client_for(team.user("outsider")).get(page_url).status_code == 404


def test_the_schema_describes_video(db, client):
    schema = client.get("/api/v1/schema?format=json").json()
    op = schema["paths"]["/api/v1/projects/{project_id}/invoke"]["post"]
    assert op["requestBody"]["content"]["video/*"]["schema"] == {"type": "string", "format": "binary"}
    params = {p["name"]: p for p in op["parameters"]}
    assert params["format"]["schema"]["enum"] == ["json", "series", "frames"] and "fps" in params
    components = schema["components"]["schemas"]
    assert {"FramesResult", "FrameResult", "VideoAbout", "SampleVideo"} <= set(components)
    assert components["Sample"]["properties"]["video"]["oneOf"][1] == {"type": "null"}
    upload = schema["paths"]["/api/v1/projects/{project_id}/samples"]["post"]
    assert "video/*" in upload["requestBody"]["content"] and "fps" in {p["name"] for p in upload["parameters"]}
