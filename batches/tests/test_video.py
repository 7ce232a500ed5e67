"""Videos in batch jobs (issue #16): a video inside the source is classified at the batch's fps with
invoke's limits; its record keeps the whole-video answer plus its label segments, and the series format
gives one entry per segment at its real times. Real videos: 3 s of ants, then 3 s of bees, at 5 fps."""

from __future__ import annotations

import csv
import io
import json

import pytest

from batches.models import Batch, BatchResult
from batches.tests.conftest import drive, zip_bytes
from batches.tests.test_api import api, base, results, start, upload
from inference.tests.conftest import deployed, hym_files  # noqa: F401 (the ants/bees model fixture)
from labeling.tests import videos as tv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip() -> bytes:
    """6 s at 5 fps, small: the deployed model's training photos, ants then bees."""
    return tv.ants_then_bees(split="train", photos=10, seconds=3, fps=5, size=(160, 120))


def _run(team, items, **extra) -> str:
    c = api(team.user("admin"))
    r = upload(c, team.project, zip_bytes(items))
    assert r.status_code == 201, r.content
    r = start(c, team.project, {"kind": "upload", "upload_id": r.json()["upload_id"]}, **extra)
    assert r.status_code == 202, r.content
    drive(r.json()["id"])
    return r.json()["id"]


def test_it_runs_a_zip_with_two_images_and_a_video_to_completion(deployed, clip, client_for):  # noqa: F811
    ant, bee = hym_files("train", "ants", 1)[0], hym_files("train", "bees", 1)[0]
    items = [("a/ant.jpg", ant.read_bytes()), ("a/bee.jpg", bee.read_bytes()), ("v/clip.mp4", clip)]
    batch_id = _run(deployed, items, fps=5)
    c = api(deployed.user("viewer"))
    state = c.get(f"{base(deployed.project)}/{batch_id}").json()
    assert (state["status"], state["total"], state["done"], state["failed"]) == ("succeeded", 3, 3, 0)
    assert state["fps"] == 5

    by_key = {r["key"]: r for r in results(c, deployed.project, batch_id)}
    assert by_key["a/ant.jpg"]["label"] == "ants" and by_key["a/bee.jpg"]["label"] == "bees"
    assert "segments" not in by_key["a/ant.jpg"]
    video = by_key["v/clip.mp4"]
    ants, bees = video["segments"]
    assert (ants["label"], bees["label"]) == ("ants", "bees")
    assert ants["startTimeMs"] == 0 and bees["stopTimeMs"] == 6000 and ants["stopTimeMs"] == bees["startTimeMs"]
    # The whole-video answer: the label covering most time, its confidence weighted by time.
    longer = ants if ants["stopTimeMs"] - ants["startTimeMs"] >= 3000 else bees
    assert video["label"] == longer["label"]
    weighted = sum(
        s["confidence"] * (s["stopTimeMs"] - s["startTimeMs"])
        for s in video["segments"]
        if s["label"] == longer["label"]
    ) / sum(s["stopTimeMs"] - s["startTimeMs"] for s in video["segments"] if s["label"] == longer["label"])
    assert video["confidence"] == pytest.approx(weighted, abs=1e-5)
    assert len(video["sha256"]) == 64 and {x["label"] for x in video["labels"]} == {"ants", "bees"}
    # Stored compactly: label indices, not names.
    row = BatchResult.objects.get(batch_id=batch_id, key="v/clip.mp4")
    assert all(isinstance(seg[0], int) for seg in row.segments)

    r = c.get(f"{base(deployed.project)}/{batch_id}/results", {"format": "series"})
    series = json.loads(b"".join(r.streaming_content))["series"]
    clip_entries = [e for e in series if e["object"]["key"] == "v/clip.mp4"]
    assert [e["object"]["label"] for e in clip_entries] == ["ants", "bees"]
    boundary = clip_entries[1]["startTimeMs"]
    assert abs(boundary - 3000) <= 1000 / 5  # within one sampling interval
    assert clip_entries[0]["stopTimeMs"] == boundary and clip_entries[1]["stopTimeMs"] == 6000
    images = [e for e in series if e["object"]["key"] != "v/clip.mp4"]
    assert images and all(e["startTimeMs"] == 0 == e["stopTimeMs"] for e in images)

    r = c.get(f"{base(deployed.project)}/{batch_id}/results", {"format": "csv"})
    table = {row["key"]: row for row in csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode()))}
    assert (
        table["v/clip.mp4"]["segments"].startswith("ants@0-")
        and f"bees@{boundary}-6000:" in (table["v/clip.mp4"]["segments"])
    )
    assert table["a/ant.jpg"]["segments"] == ""

    # The page's thumbnail of a video is its first frame; an outsider sees nothing.
    thumb = f"/projects/{deployed.project.pk}/batches/{batch_id}/thumb/"
    r = client_for(deployed.user("viewer")).get(thumb, {"key": "v/clip.mp4"})
    assert r.status_code == 200 and r["Content-Type"] == "image/webp" and r.content[8:12] == b"WEBP"
    assert client_for(deployed.user("outsider")).get(thumb, {"key": "v/clip.mp4"}).status_code == 404


def test_default_fps_is_1_and_a_corrupt_video_is_a_per_item_error(deployed, clip, client_for):  # noqa: F811
    ant = hym_files("train", "ants", 1)[0]
    items = [
        ("ant.jpg", ant.read_bytes()),
        ("cut.mp4", clip[: len(clip) // 3]),
        ("junk.mp4", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 500),
        ("clip.mkv", tv.ants_then_bees(photos=3, seconds=3, fps=5, size=(96, 72), container="matroska")),
    ]
    batch_id = _run(deployed, items)
    c = api(deployed.user("viewer"))
    state = c.get(f"{base(deployed.project)}/{batch_id}").json()
    assert (state["status"], state["done"], state["failed"], state["fps"]) == ("succeeded", 2, 2, 1)
    by_key = {r["key"]: r for r in results(c, deployed.project, batch_id)}
    assert by_key["cut.mp4"]["error"]["code"] == "invalid_video"
    assert by_key["junk.mp4"]["error"]["code"] == "invalid_video"
    thumb = f"/projects/{deployed.project.pk}/batches/{batch_id}/thumb/"
    assert client_for(deployed.user("viewer")).get(thumb, {"key": "cut.mp4"}).status_code == 404
    # 1 fps: six frames, segments on whole seconds, covering the whole 6 s.
    segments = by_key["clip.mkv"]["segments"]
    assert segments[0]["startTimeMs"] == 0 and segments[-1]["stopTimeMs"] == 6000
    assert all(s["startTimeMs"] % 1000 == 0 for s in segments)


def test_a_video_over_invoke_limits_is_a_per_item_too_large(deployed, clip, settings):  # noqa: F811
    settings.PICTOR_VIDEO_MAX_SECONDS = 5
    batch_id = _run(deployed, [("clip.webm", clip)])
    (record,) = results(api(deployed.user("viewer")), deployed.project, batch_id)
    assert record["error"]["code"] == "too_large"


@pytest.mark.parametrize("fps", [0, -1, 10.5, "x"])
def test_fps_out_of_range_at_create_is_400_with_nothing_created(deployed, fps):  # noqa: F811
    c = api(deployed.user("admin"))
    r = upload(c, deployed.project, zip_bytes([("a.jpg", hym_files("train", "ants", 1)[0].read_bytes())]))
    r = start(c, deployed.project, {"kind": "upload", "upload_id": r.json()["upload_id"]}, fps=fps)
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid" and "fps" in r.json()["error"]["fields"]
    assert not Batch.objects.exists()


def test_the_fps_maximum_is_a_setting(deployed, settings):  # noqa: F811
    settings.PICTOR_VIDEO_MAX_FPS = 2
    c = api(deployed.user("admin"))
    r = upload(c, deployed.project, zip_bytes([("a.jpg", hym_files("train", "ants", 1)[0].read_bytes())]))
    source = {"kind": "upload", "upload_id": r.json()["upload_id"]}
    assert start(c, deployed.project, source, fps=3).status_code == 400
    assert not Batch.objects.exists()
    r = start(c, deployed.project, source, fps=2)
    assert r.status_code == 202 and Batch.objects.get().fps == 2


def test_a_listing_takes_video_files_as_candidates():
    from batches.sources import is_candidate

    assert all(is_candidate(f"x/clip.{ext}") for ext in ("mp4", "webm", "mov", "mkv", "MP4"))
    assert not is_candidate("x/notes.txt") and not is_candidate("__MACOSX/clip.mp4")


def test_a_video_sent_to_labeling_becomes_its_frames_at_the_batch_fps(deployed, clip):  # noqa: F811
    from batches import services
    from labeling.models import Sample

    batch_id = _run(deployed, [("v/clip.mp4", clip)], fps=1)
    assert services.to_samples_run(batch_id=batch_id, keys=["v/clip.mp4"], max_confidence=None) > 0
    sha = BatchResult.objects.get(batch_id=batch_id).sha256
    frames = Sample.objects.filter(project=deployed.project, video_sha256=sha)
    # 6 s at 1 fps: six frames (labeling keeps them as frames of a video, with their times).
    assert frames.count() == 6 and set(frames.values_list("source", flat=True)) == {Sample.Source.VIDEO}
    assert sorted(frames.values_list("video_time_ms", flat=True)) == [0, 1000, 2000, 3000, 4000, 5000]
    assert services.to_samples_run(batch_id=batch_id, keys=["v/clip.mp4"], max_confidence=None) == 0


def test_the_page_starts_a_batch_at_a_chosen_fps_for_owner_and_admin_only(team, client_for, tmp_path, settings):
    from batches.tests.conftest import write_folder

    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    write_folder(tmp_path, [("v/clip.mp4", b"not yet read")])
    page = f"/projects/{team.project.pk}/batches/"
    start = f"/projects/{team.project.pk}/batches/start/"
    body = {"kind": "folder", "path": str(tmp_path), "fps": "2.5"}
    assert 'name="fps"' in client_for(team.user("admin")).get(page).content.decode()
    assert client_for(team.user("labeler")).post(start, body).status_code == 403
    assert client_for(team.user("outsider")).post(start, body).status_code == 404
    r = client_for(team.user("admin")).post(start, {**body, "fps": "0"}, follow=True)
    assert "frames per second" in r.content.decode() and not Batch.objects.exists()
    settings.PICTOR_VIDEO_MAX_FPS = 2
    r = client_for(team.user("owner")).post(start, body, follow=True)
    assert "at most 2 fps" in r.content.decode() and not Batch.objects.exists()


def test_the_page_pins_the_chosen_fps(deployed, client_for, tmp_path, settings):  # noqa: F811
    from batches.tests.conftest import write_folder

    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    write_folder(tmp_path, [("v/clip.mp4", b"not yet read")])
    r = client_for(deployed.user("owner")).post(
        f"/projects/{deployed.project.pk}/batches/start/", {"kind": "folder", "path": str(tmp_path), "fps": "2.5"}
    )
    assert r.status_code == 302 and Batch.objects.get().fps == 2.5
