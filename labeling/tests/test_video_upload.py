"""Video uploads: POST .../samples?fps= stores a video's sampled frames as samples (source "video")."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Sample
from labeling.tests import videos as tv
from labeling.tests.conftest import stored_files
from projects import keys


def api(user=None) -> APIClient:
    c = APIClient()
    if user is not None:
        c.force_authenticate(user)
    return c


def url(team, query=""):
    return f"/api/v1/projects/{team.project.pk}/samples{query}"


@pytest.fixture(scope="module")
def clip() -> bytes:
    """Fifteen different photos per class: no two frames alike (a repeated picture is one sample)."""
    return tv.ants_then_bees(photos=15, seconds=3, fps=5, size=(96, 72))


def upload(client, team, data, query="", name="clip.mp4", labels=()):
    body = {"file": [SimpleUploadedFile(name, data, content_type="video/mp4")]}
    if labels:
        body["label"] = list(labels)
    return client.post(url(team, query), body, format="multipart")


def test_it_stores_each_sampled_frame_as_a_sample_with_its_video_and_time(team, clip, media_root):
    r = upload(api(team.user("labeler")), team, clip, "?fps=2", labels=["insects"])
    assert r.status_code == 201, r.content
    samples = r.json()["samples"]
    assert [s["video"]["time_ms"] for s in samples] == [
        0,
        500,
        1000,
        1500,
        2000,
        2500,
        3000,
        3500,
        4000,
        4500,
        5000,
        5500,
    ]
    shas = {s["video"]["sha256"] for s in samples}
    assert len(shas) == 1 and len(shas.pop()) == 64
    assert all(
        s["source"] == "video" and s["labels"] == ["insects"] and (s["width"], s["height"]) == (96, 72) for s in samples
    )
    assert samples[1]["filename"] == "clip.mp4#t=0.500"
    rows = Sample.objects.filter(project=team.project)
    assert rows.count() == 12 and set(rows.values_list("format", flat=True)) == {"jpeg"}
    assert len(stored_files(media_root)) == 24  # frames and thumbnails
    one = api(team.user("viewer")).get(url(team, f"/{samples[3]['id']}"))
    assert one.status_code == 200 and one.json()["video"] == samples[3]["video"]


def test_the_same_video_again_comes_back_as_duplicates(team, clip):
    c = api(team.user("labeler"))
    first = upload(c, team, clip).json()["samples"]
    second = upload(c, team, clip, name="copy.mp4").json()["samples"]
    assert [s["id"] for s in second] == [s["id"] for s in first] and all(s["duplicate"] for s in second)
    assert Sample.objects.filter(project=team.project).count() == 6


def test_identical_frames_are_stored_once(team):
    from PIL import Image

    still = Image.new("RGB", (64, 48), (200, 40, 40))
    video = tv.encode([still] * 10, fps=5, size=(64, 48))
    c = api(team.user("labeler"))
    first = upload(c, team, video, "?fps=5").json()["samples"]
    # Ten identical frames: one sample (a repeated picture is one file).
    assert len({s["id"] for s in first}) == 1


def test_json_base64_and_raw_video_bodies(team, clip):
    c = api(team.user("labeler"))
    r = c.post(url(team), {"data": base64.b64encode(clip).decode(), "labels": ["ants"]}, format="json")
    assert r.status_code == 201 and len(r.json()["samples"]) == 6
    other = tv.ants_then_bees(seconds=1, fps=5, size=(64, 48))
    r = c.post(
        url(team, "?fps=5"),
        data=other,
        content_type="video/webm",
        HTTP_CONTENT_DISPOSITION='attachment; filename="x.mkv"',
    )
    assert r.status_code == 201, r.content
    assert len(r.json()["samples"]) == 10 and r.json()["samples"][0]["filename"] == "x.mkv#t=0.000"


def test_a_bad_video_stores_nothing_and_fails_only_itself(team, clip, media_root):
    c = api(team.user("labeler"))
    webm = tv.ants_then_bees(seconds=2, fps=5, container="webm", size=(64, 48))
    r = upload(c, team, webm[: len(webm) // 2], name="cut.webm")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"
    r = upload(c, team, b"just words, no pictures" * 50, name="words.mp4")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"
    assert not Sample.objects.exists() and stored_files(media_root) == []
    photo = tv.hym("train", "ants", 1)[0].read_bytes()
    r = c.post(
        url(team),
        {"file": [SimpleUploadedFile("a.jpg", photo), SimpleUploadedFile("bad.mov", b"\x00" * 100)]},
        format="multipart",
    )
    assert r.status_code == 207
    good, bad = r.json()["samples"]
    assert good["video"] is None and good["source"] == "upload"
    assert bad == {"error": {"code": "invalid_video", "message": bad["error"]["message"]}, "filename": "bad.mov"}


def test_limits_answer_413_and_fps_400(team, clip, settings):
    c = api(team.user("labeler"))
    settings.PICTOR_VIDEO_MAX_FRAMES = 10
    r = upload(c, team, clip, "?fps=5")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    settings.PICTOR_VIDEO_MAX_FRAMES = 600
    settings.PICTOR_VIDEO_MAX_SECONDS = 2
    assert upload(c, team, clip).status_code == 413
    settings.PICTOR_VIDEO_MAX_SECONDS = 600
    for fps in ("0", "100", "x"):
        r = upload(c, team, clip, f"?fps={fps}")
        assert r.status_code == 400 and "fps" in r.json()["error"]["fields"]
    two = [SimpleUploadedFile("a.mp4", clip), SimpleUploadedFile("b.mp4", clip)]
    assert c.post(url(team), {"file": two}, format="multipart").status_code == 413
    assert not Sample.objects.exists()


def test_who_may_upload_a_video(team, clip):
    assert upload(api(team.user("viewer")), team, clip).status_code == 403
    assert upload(api(team.user("outsider")), team, clip).status_code == 404
    assert upload(api(), team, clip).status_code in (401, 403)
    assert upload(api(team.user("owner")), team, clip).status_code == 201
    invoke_key = keys.api_key_create(project=team.project, name="app", scope="invoke")[1]
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {invoke_key}")
    assert upload(c, team, clip).status_code == 403
    full_key = keys.api_key_create(project=team.project, name="ops", scope="full")[1]
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {full_key}")
    r = upload(c, team, clip, "?fps=0.5")
    assert r.status_code == 201 and {s["source"] for s in r.json()["samples"]} == {"video"}


def test_the_sample_page_shows_the_video_and_the_moment(team, clip, client_for):
    samples = upload(api(team.user("labeler")), team, clip).json()["samples"]
    frame = samples[4]
    page = client_for(team.user("viewer")).get(
        reverse("sample_detail", kwargs={"project_id": team.project.pk, "sample_id": frame["id"]})
    )
    html = page.content.decode()
    assert page.status_code == 200 and 'id="sample-video"' in html
    assert frame["video"]["sha256"][:12] in html and "0:04.000" in html
    browser = reverse("sample_browser", kwargs={"project_id": team.project.pk})
    listing = client_for(team.user("viewer")).get(f"{browser}?video={frame['video']['sha256']}").content.decode()
    assert "6 samples" in listing and 'id="video-filter"' in listing
    outsider = client_for(team.user("outsider"))
    assert (
        outsider.get(
            reverse("sample_detail", kwargs={"project_id": team.project.pk, "sample_id": frame["id"]})
        ).status_code
        == 404
    )


def test_the_upload_page_takes_videos(team, client_for):
    page = client_for(team.user("labeler")).get(reverse("upload", kwargs={"project_id": team.project.pk}))
    html = page.content.decode()
    assert "video/*" in html and 'id="video-fps"' in html and "MP4, MOV, WebM, MKV" in html
    assert (
        client_for(team.user("viewer")).get(reverse("upload", kwargs={"project_id": team.project.pk})).status_code
        == 403
    )


def test_a_large_upload_is_decoded_from_its_temporary_file(team, clip, settings):
    """Past FILE_UPLOAD_MAX_MEMORY_SIZE Django spools the part to disk; the video is read from there."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    r = upload(api(team.user("labeler")), team, clip)
    assert r.status_code == 201, r.content
    assert len(r.json()["samples"]) == 6


def test_the_api_lists_one_videos_frames_in_time_order(team, clip):
    c = api(team.user("labeler"))
    sha = upload(c, team, clip).json()["samples"][0]["video"]["sha256"]
    c.post(url(team), {"file": [SimpleUploadedFile("a.jpg", tv.hym("val", "ants", 1)[0].read_bytes())]})
    listed = api(team.user("viewer")).get(url(team, f"?video={sha}")).json()
    assert listed["count"] == 6 and [s["video"]["time_ms"] for s in listed["results"]] == [
        0,
        1000,
        2000,
        3000,
        4000,
        5000,
    ]
    assert api(team.user("viewer")).get(url(team)).json()["count"] == 7
    r = api(team.user("viewer")).get(url(team, "?video=nothex"))
    assert r.status_code == 400 and "video" in r.json()["error"]["fields"]
    assert api(team.user("outsider")).get(url(team, f"?video={sha}")).status_code == 404


def test_it_pages_one_videos_frames_in_time_order_by_cursor(team):
    from labeling import selectors
    from labeling.tests.factories import make_sample

    video = "a" * 64
    made = [make_sample(team.project, seed=i) for i in range(5)]
    for t, sample in zip((400, 0, 300, 100, 200), made):
        Sample.objects.filter(pk=sample.pk).update(video_sha256=video, video_time_ms=t)
    first = selectors.sample_page(project=team.project, video=video, size=2)
    assert [s.video_time_ms for s in first.items] == [0, 100] and first.count == 5
    assert first.previous_cursor is None
    second = selectors.sample_page(project=team.project, video=video, cursor=first.next_cursor, size=2)
    assert [s.video_time_ms for s in second.items] == [200, 300]
    last = selectors.sample_page(project=team.project, video=video, cursor=second.next_cursor, size=2)
    assert [s.video_time_ms for s in last.items] == [400] and last.next_cursor is None
    back = selectors.sample_page(project=team.project, video=video, cursor=last.previous_cursor, size=2)
    assert [s.video_time_ms for s in back.items] == [200, 300]
    with pytest.raises(selectors.BadCursor):
        selectors.sample_page(project=team.project, video=video, cursor=first.next_cursor[:-2] + "!!", size=2)
