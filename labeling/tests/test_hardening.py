"""Defects a hostile sweep found (issue 12): bad input gets a clear answer, nothing half written."""

import csv
import io
import re
import tracemalloc
import zipfile

import numpy as np
from django.urls import reverse
from rest_framework.test import APIClient

from labeling import images, services, zips
from labeling.models import Label, Sample
from labeling.tests.badfiles import make_zip
from labeling.tests.factories import jpeg_bytes, make_sample


def api(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_it_answers_a_merge_into_a_malformed_target_with_a_message(team, client_for):
    ant = services.label_create(project=team.project, name="ant")
    c = client_for(team.user("admin"))
    r = c.post(
        reverse("label_merge", kwargs={"project_id": team.project.pk, "label_id": ant.pk}),
        {"target": "not-a-uuid"},
        HTTP_HX_REQUEST="true",
    )
    assert r.status_code == 200 and "Choose the label to merge into" in r.content.decode()
    assert Label.objects.filter(pk=ant.pk).exists()


def test_it_leaves_no_labels_behind_when_an_upload_is_rejected(team):
    c = api(team.user("labeler"))
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/samples",
        {"file": [io.BytesIO(jpeg_bytes(1))], "label": ["one", "two"]},
        format="multipart",
    )
    assert r.status_code == 400, r.content
    assert not Label.objects.filter(project=team.project).exists()
    assert not Sample.objects.filter(project=team.project).exists()


def test_it_escapes_formula_cells_in_the_export(team):
    make_sample(team.project, seed=1, labels=['=HYPERLINK("http://evil","x")'])
    make_sample(team.project, seed=2, labels=["@SUM(1)"])
    make_sample(team.project, seed=3, labels=["ants"])
    r = api(team.user("viewer")).get(f"/api/v1/projects/{team.project.pk}/export")
    zf = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    rows = list(csv.DictReader(io.StringIO(zf.read("samples.csv").decode())))
    cells = [v for row in rows for v in row.values()]
    assert not any(v[:1] in "=+-@" for v in cells if v)
    assert {row["labels"] for row in rows} == {'\'=HYPERLINK("http://evil","x")', "'@SUM(1)", "ants"}


def test_it_keeps_markup_out_of_the_page_title(team, client_for):
    sample = make_sample(team.project, seed=1)
    Sample.objects.filter(pk=sample.pk).update(filename="<script>alert(1)</script>.jpg")
    page = (
        client_for(team.user("viewer"))
        .get(reverse("sample_detail", kwargs={"project_id": team.project.pk, "sample_id": sample.pk}))
        .content.decode()
    )
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "script" not in title.replace("alert(1)", "") and "&lt;" not in title
    assert "alert(1).jpg" in title
    assert "js/explain.js" in page  # the page's script is still loaded, outside the title


def test_it_refuses_a_zip_of_hidden_files_only(team):
    data = make_zip({".DS_Store": b"x" * 100, ".hidden/a.jpg": jpeg_bytes(1), "__MACOSX/._a.jpg": b"y" * 50})
    r = api(team.user("labeler")).post(
        f"/api/v1/projects/{team.project.pk}/samples", {"file": [io.BytesIO(data)]}, format="multipart"
    )
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["error"]["code"] == "invalid" and "no images" in body["error"]["message"]
    assert not Sample.objects.exists()


def test_it_strips_bidi_controls_from_stored_file_names(team):
    name = "photo\u202egpj.exe\u2066\u200f.jpg"
    report = services.samples_ingest(
        project=team.project, items=[services.IngestItem(filename=name, data=jpeg_bytes(1))], user=None
    )
    assert report.results[0].sample.filename == "photogpj.exe.jpg"


def _zeros_zip(entries: int, size: int) -> bytes:
    buf = io.BytesIO()
    zeros = bytes(size)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(entries):
            zf.writestr(f"ants/{i}.bmp", zeros)
    return buf.getvalue()


def test_it_refuses_a_zip_of_many_one_mib_zero_entries_without_expanding_it():
    data = _zeros_zip(1000, 1024 * 1024)
    assert len(data) < 1.2 * 1024 * 1024
    limits = services.image_limits()
    tracemalloc.start()
    try:
        zips.iter_zip(data, limits=limits)
    except images.ZipError as exc:
        assert exc.code == "invalid" and "zip bomb" in exc.message
    else:
        raise AssertionError("accepted a zip bomb")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_it_imports_zip_entries_one_at_a_time(team):
    rng = np.random.default_rng(0)
    from PIL import Image

    entries = {}
    for i in range(30):  # ~30 × 190 KB of noise BMPs, stored: 5.7 MB expanded
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "BMP")
        entries[f"ants/{i}.bmp"] = buf.getvalue()
    data = make_zip(entries, compression=zipfile.ZIP_STORED)
    tracemalloc.start()
    try:
        report = services.samples_ingest(
            project=team.project, items=[services.IngestItem(filename="a.zip", data=data)], user=None
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.accepted == 30
    # The archive was in memory before; its expanded entries never are all at once (5.9 MB).
    assert peak < len(data) / 2, (peak, len(data))
