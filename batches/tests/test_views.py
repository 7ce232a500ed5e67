"""The Batches page: start, live status (286 when final), steer, filtered result grid, thumbnails,
send to labeling; every view for an owner, an admin, a labeler, a viewer and an outsider."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from batches.models import Batch
from batches.tests.conftest import drive, images, write_folder, zip_bytes


@pytest.fixture
def finished(team, model, tmp_path, settings):
    from batches import services

    write_folder(tmp_path / "root", images(60))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path / "root")]
    batch = services.batch_start(project=team.project, source={"kind": "folder", "path": str(tmp_path / "root")})
    drive(batch.pk)
    batch.refresh_from_db()
    assert batch.status == "succeeded"
    return batch


def url(name: str, project, batch=None, **kw) -> str:
    args = {"project_id": project.pk, **({"batch_id": batch.pk} if batch else {}), **kw}
    return reverse(name, kwargs=args)


def test_every_page_for_every_role(team, finished, client_for):
    p = team.project
    thumb = url("batch_thumbnail", p, finished) + "?key=b/00000.png"
    reads = [url("batches_page", p), url("batch_detail", p, finished), url("batch_status", p, finished), thumb]
    for role in ("owner", "admin", "labeler", "viewer"):
        c = client_for(team.user(role))
        for u in reads:
            r = c.get(u)
            assert r.status_code == 200, (role, u)
        page = c.get(url("batches_page", p)).content.decode()
        assert ("Start a batch" in page) == (role in ("owner", "admin"))
        steer = c.post(url("batch_control", p, finished, action="pause"))
        assert steer.status_code == (302 if role in ("owner", "admin") else 403), role
        send = c.post(url("batch_to_samples", p, finished), {"key": ["b/00000.png"]})
        assert send.status_code == (403 if role == "viewer" else 302), role
        start = c.post(url("batch_start", p), {"kind": "folder", "path": "/nope"})
        assert start.status_code == (302 if role in ("owner", "admin") else 403), role
    outsider = client_for(team.user("outsider"))
    for u in reads:
        assert outsider.get(u).status_code == 404, u
    for u in (
        url("batch_control", p, finished, action="cancel"),
        url("batch_to_samples", p, finished),
        url("batch_start", p),
    ):
        assert outsider.post(u).status_code == 404, u
    assert client_for(None).get(reads[0]).status_code == 302  # to sign-in
    assert Batch.objects.count() == 1  # no refused start created anything


def test_the_grid_filters_by_label_and_confidence_and_thumbnails_are_images(team, finished, client_for):
    c = client_for(team.user("viewer"))
    page = c.get(url("batch_detail", team.project, finished), {"label": "bright"}).content.decode()
    assert "30 items" in page and 'data-key="b/00000.png"' in page and 'data-key="d/00001.png"' not in page
    grid = c.get(
        url("batch_detail", team.project, finished),
        {"label": "dark"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="sample-grid",
    )
    html = grid.content.decode()
    assert html.lstrip().startswith('<section id="sample-grid"') and "<html" not in html
    assert 'data-key="d/00001.png"' in html and 'data-key="b/00000.png"' not in html
    none = c.get(url("batch_detail", team.project, finished), {"min_confidence": "1.01"})
    assert none.status_code == 200  # an out-of-range filter is ignored, not an error
    page = c.get(url("batch_detail", team.project, finished), {"max_confidence": "0.0001"}).content.decode()
    assert "0 items" in page
    for fmt in ("csv", "jsonl", "series"):
        assert f"results?format={fmt}" in c.get(url("batch_detail", team.project, finished)).content.decode()
    r = c.get(url("batch_thumbnail", team.project, finished), {"key": "b/00000.png"})
    assert r.status_code == 200 and r["Content-Type"] == "image/webp" and r.content[:4] == b"RIFF"
    assert c.get(url("batch_thumbnail", team.project, finished), {"key": "../../etc/passwd"}).status_code == 404


def test_status_polling_stops_with_286_once_final(team, model, finished, client_for):
    c = client_for(team.user("admin"))
    r = c.get(url("batch_status", team.project, finished), HTTP_HX_REQUEST="true")
    assert r.status_code == 286 and "succeeded" in r.content.decode() and "hx-trigger" not in r.content.decode()
    Batch.objects.filter(pk=finished.pk).update(status="running", finished=None)
    r = c.get(url("batch_status", team.project, finished), HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and 'hx-trigger="every 1s"' in r.content.decode()
    r = c.post(url("batch_control", team.project, finished, action="pause"), HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and "Resume" in r.content.decode()
    assert Batch.objects.get(pk=finished.pk).status == "paused"


def test_start_from_the_page_with_an_upload_and_send_low_confidence_items(
    team, model, client_for, django_capture_on_commit_callbacks
):
    c = client_for(team.user("admin"))
    archive = SimpleUploadedFile("photos.zip", zip_bytes(images(20)))
    with django_capture_on_commit_callbacks():
        r = c.post(url("batch_start", team.project), {"kind": "upload", "file": archive})
    batch = Batch.objects.get()
    assert r.status_code == 302 and r["Location"] == url("batch_detail", team.project, batch)
    drive(batch.pk)
    r = c.post(url("batch_to_samples", team.project, batch), {"max_confidence": "1"})
    assert r.status_code == 302
    r = c.post(
        url("batch_start", team.project), {"kind": "upload", "file": SimpleUploadedFile("x.zip", b"nope")}, follow=True
    )
    assert "neither a zip nor a tar" in r.content.decode() and Batch.objects.count() == 1
