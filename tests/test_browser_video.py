"""A video through the upload page in a real Chromium: its frames arrive at the chosen rate, and a
frame's page says which video and which moment it came from."""

import pytest

from labeling.models import Sample
from labeling.tests import videos as tv
from projects.tests.factories import PASSWORD
from tests.browser import ARTIFACTS


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_upload_a_video_at_two_frames_a_second_and_open_a_frame(live_server, browser_page, team, tmp_path):
    page = browser_page
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    (tmp_path / "clip.mp4").write_bytes(tv.ants_then_bees(photos=15, seconds=2, fps=5, size=(96, 72)))

    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{team.project.pk}/upload/")
    page.fill("#id_username", "labeler")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#dropzone")
    page.fill("#video-fps", "2")
    page.fill("#label-all", "insects")
    page.set_input_files("#file-input", str(tmp_path / "clip.mp4"))
    page.wait_for_selector("#upload-report:not([hidden])")
    assert not errors, errors
    assert page.inner_text("#count-accepted") == "8" and page.inner_text("#count-rejected") == "0"
    frames = Sample.objects.filter(project=team.project).order_by("video_time_ms")
    assert list(frames.values_list("video_time_ms", flat=True)) == [0, 500, 1000, 1500, 2000, 2500, 3000, 3500]
    assert set(frames.values_list("source", flat=True)) == {"video"}

    page.goto(f"{live_server.url}/projects/{team.project.pk}/samples/{frames[3].pk}/")
    text = page.inner_text("#sample-video")
    assert frames[3].video_sha256[:12] in text and "0:01.500" in text
    page.click("#sample-video a")
    page.wait_for_selector("#video-filter")
    assert "8 samples" in page.inner_text("#sample-grid")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "video-frames.png"), full_page=True)
