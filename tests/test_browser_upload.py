"""Uploading files and a zip from the upload page in a real Chromium: progress rows and a report."""

import io
import zipfile

import pytest

from labeling.models import Label, Sample
from labeling.tests.factories import jpeg_bytes
from projects.tests.factories import PASSWORD
from tests.browser import ARTIFACTS


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_upload_files_and_a_zip_and_read_the_report(live_server, browser_page, team, tmp_path):
    page = browser_page
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for i in range(3):
        (tmp_path / f"img{i}.jpg").write_bytes(jpeg_bytes(100 + i))
    (tmp_path / "notes.jpg").write_bytes(b"this is text, not a photo")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ants/a.jpg", jpeg_bytes(200))
        zf.writestr("bees/b.jpg", jpeg_bytes(201))
        zf.writestr("loose.jpg", jpeg_bytes(100))  # a duplicate of img0.jpg
    (tmp_path / "set.zip").write_bytes(buf.getvalue())

    page.goto(f"{live_server.url}/accounts/login/?next=/projects/{team.project.pk}/upload/")
    page.fill("#id_username", "labeler")
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#dropzone")
    files = [str(tmp_path / f"img{i}.jpg") for i in range(3)] + [str(tmp_path / "notes.jpg")]
    page.set_input_files("#file-input", files)
    page.wait_for_selector("#upload-report:not([hidden])")
    page.set_input_files("#file-input", str(tmp_path / "set.zip"))
    page.wait_for_function("() => document.getElementById('overall-text').textContent === '5 / 5 files'")
    assert not errors, errors
    assert page.inner_text("#count-accepted") == "5"
    assert page.inner_text("#count-duplicates") == "1"
    assert page.inner_text("#count-rejected") == "1"
    assert "notes.jpg" in page.inner_text("#rejections") and "not a supported image" in page.inner_text("#rejections")
    assert page.locator("#upload-list li").count() == 5
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "upload.png"), full_page=True)
    assert Sample.objects.filter(project=team.project).count() == 5
    assert set(Label.objects.filter(project=team.project).values_list("name", flat=True)) == {"ants", "bees"}
