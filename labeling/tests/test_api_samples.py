import base64
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from conftest import datasets_dir
from labeling.models import Label, LabelEvent, Sample
from labeling.tests import badfiles
from labeling.tests.conftest import stored_files

HYM = datasets_dir() / "hymenoptera_data"


def api(user=None) -> APIClient:
    c = APIClient()
    if user is not None:
        c.force_authenticate(user)
    return c


def url(team, suffix=""):
    return f"/api/v1/projects/{team.project.pk}{suffix}"


def jpeg(seed=0) -> bytes:
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    return buf.getvalue()


def test_multipart_upload_stores_image_and_thumbnail_and_creates_labels(team, media_root):
    c = api(team.user("labeler"))
    r = c.post(
        url(team, "/samples"), {"file": [SimpleUploadedFile("a.jpg", jpeg(1))], "label": ["ants"]}, format="multipart"
    )
    assert r.status_code == 201, r.content
    (s,) = r.json()["samples"]
    assert s["labels"] == ["ants"] and s["duplicate"] is False and (s["width"], s["height"]) == (64, 48)
    sample = Sample.objects.get(pk=s["id"])
    assert sample.labeled_at is not None and Label.objects.filter(project=team.project, name="ants").exists()
    assert sorted(stored_files(media_root)) == sorted([sample.image_name, sample.thumbnail_name])
    img = c.get(s["image_url"])
    assert img.status_code == 200 and b"".join(img.streaming_content) == jpeg(1)
    thumb = c.get(s["thumbnail_url"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"


def test_json_base64_single_and_items(team):
    c = api(team.user("labeler"))
    r = c.post(url(team, "/samples"), {"data": base64.b64encode(jpeg(2)).decode(), "labels": ["bees"]}, format="json")
    assert r.status_code == 201 and r.json()["samples"][0]["labels"] == ["bees"]
    items = [{"data": base64.b64encode(jpeg(i)).decode()} for i in (3, 4)]
    r = c.post(url(team, "/samples"), {"items": items}, format="json")
    assert r.status_code == 201 and len(r.json()["samples"]) == 2


def test_a_duplicate_comes_back_with_its_id_and_gets_the_new_labels(team, media_root):
    c = api(team.user("labeler"))
    first = c.post(url(team, "/samples"), {"data": base64.b64encode(jpeg(5)).decode()}, format="json").json()[
        "samples"
    ][0]
    again = c.post(
        url(team, "/samples"), {"data": base64.b64encode(jpeg(5)).decode(), "labels": ["ants"]}, format="json"
    )
    assert again.status_code == 201
    dup = again.json()["samples"][0]
    assert dup["id"] == first["id"] and dup["duplicate"] is True and dup["labels"] == ["ants"]
    assert Sample.objects.count() == 1 and len(stored_files(media_root)) == 2


def test_a_mixed_batch_answers_207_with_per_file_errors(team, media_root):
    c = api(team.user("labeler"))
    files = [SimpleUploadedFile("good.jpg", jpeg(6)), SimpleUploadedFile("bad.jpg", b"just text, not a jpeg")]
    r = c.post(url(team, "/samples"), {"file": files}, format="multipart")
    assert r.status_code == 207
    good, bad = r.json()["samples"]
    assert good["duplicate"] is False
    assert bad["filename"] == "bad.jpg" and bad["error"]["code"] == "unsupported_media_type" and bad["error"]["message"]
    assert Sample.objects.count() == 1 and len(stored_files(media_root)) == 2


# The upload endpoint takes archives too and, like images, knows them by content: a zip named .jpg
# is imported as a zip there (validate_image alone refuses it; see test_imaging).
BAD_UPLOADS = [s for s in badfiles.bad_image_samples() if s.name != "zip_as_image"]


@pytest.mark.parametrize("bad", BAD_UPLOADS, ids=lambda s: s.name)
def test_each_bad_file_gets_its_code_and_leaves_nothing_behind(team, media_root, bad):
    r = api(team.user("labeler")).post(url(team, "/samples"), {"file": [bad.upload()]}, format="multipart")
    assert r.status_code == bad.status, r.content
    body = r.json()
    assert body["error"]["code"] == bad.code and body["error"]["message"]
    assert not Sample.objects.exists() and stored_files(media_root) == []


def test_an_oversized_file_is_413(team, media_root, settings):
    settings.PICTOR_MAX_UPLOAD_BYTES = 10_000
    big = badfiles.oversized(limit=10_000)
    r = api(team.user("labeler")).post(url(team, "/samples"), {"file": [big.upload()]}, format="multipart")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert stored_files(media_root) == []


@pytest.mark.parametrize("bad", badfiles.bad_zip_samples(), ids=lambda s: s.name)
def test_a_hostile_zip_is_refused_whole(team, media_root, bad):
    upload = SimpleUploadedFile(f"{bad.name}.zip", bad.data)
    r = api(team.user("labeler")).post(url(team, "/samples"), {"file": [upload]}, format="multipart")
    assert r.status_code in (400, 413), r.content
    assert r.json()["error"]["code"] == bad.code
    assert not Sample.objects.exists() and not Label.objects.exists() and stored_files(media_root) == []


def test_a_zip_of_label_folders_imports_labeled_samples(team):
    if not HYM.exists():
        pytest.skip(f"dataset missing at {HYM}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls in ("ants", "bees"):
            for p in sorted((HYM / "train" / cls).glob("*.jpg"))[:5]:
                zf.write(p, f"train/{cls}/{p.name}")
    r = api(team.user("labeler")).post(
        url(team, "/samples"), {"file": [SimpleUploadedFile("train.zip", buf.getvalue())]}, format="multipart"
    )
    assert r.status_code == 201, r.content
    assert sorted({tuple(s["labels"]) for s in r.json()["samples"]}) == [("ants",), ("bees",)]
    assert Sample.objects.filter(project=team.project, labeled_at__isnull=False).count() == 10


def test_single_label_projects_refuse_two_labels(team):
    r = api(team.user("labeler")).post(
        url(team, "/samples"), {"data": base64.b64encode(jpeg(7)).decode(), "labels": ["a", "b"]}, format="json"
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
    assert not Sample.objects.exists()


def test_list_filters_and_paginates(team):
    c = api(team.user("labeler"))
    for i in range(3):
        c.post(
            url(team, "/samples"),
            {"data": base64.b64encode(jpeg(10 + i)).decode(), "labels": ["ants"] if i else []},
            format="json",
        )
    body = c.get(url(team, "/samples?labeled=true")).json()
    assert body["count"] == 2 and {tuple(s["labels"]) for s in body["results"]} == {("ants",)}
    assert c.get(url(team, "/samples?labeled=false")).json()["count"] == 1
    assert c.get(url(team, "/samples?label=ants")).json()["count"] == 2
    page = c.get(url(team, "/samples?page_size=2")).json()
    assert len(page["results"]) == 2 and page["next"] and page["previous"] is None
    assert set(page["results"][0]) >= {
        "id",
        "sha256",
        "width",
        "height",
        "labels",
        "image_url",
        "thumbnail_url",
        "created",
    }
    r = c.get(url(team, "/samples?labeled=maybe"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_put_labels_records_the_audit_trail_and_clears(team):
    c = api(team.user("labeler"))
    sid = c.post(url(team, "/samples"), {"data": base64.b64encode(jpeg(20)).decode()}, format="json").json()["samples"][
        0
    ]["id"]
    r = c.put(url(team, f"/samples/{sid}/labels"), {"labels": ["bees"]}, format="json")
    assert r.status_code == 200 and r.json()["labels"] == ["bees"]
    r = c.put(url(team, f"/samples/{sid}/labels"), {"labels": []}, format="json")
    assert r.json()["labels"] == [] and Sample.objects.get(pk=sid).labeled_at is None
    events = list(LabelEvent.objects.filter(sample_id=sid).order_by("id").values_list("old", "new"))
    assert events == [([], ["bees"]), (["bees"], [])]
    assert c.put(url(team, f"/samples/{sid}/labels"), {"labels": "bees"}, format="json").status_code == 400


def test_get_and_delete_one_sample(team, media_root, django_capture_on_commit_callbacks):
    c = api(team.user("labeler"))
    sid = c.post(url(team, "/samples"), {"data": base64.b64encode(jpeg(21)).decode()}, format="json").json()["samples"][
        0
    ]["id"]
    body = c.get(url(team, f"/samples/{sid}")).json()
    assert body["id"] == sid and "prediction" in body
    with django_capture_on_commit_callbacks(execute=True):
        assert c.delete(url(team, f"/samples/{sid}")).status_code == 204
    assert stored_files(media_root) == [] and not Sample.objects.exists()
    r = c.get(url(team, f"/samples/{sid}"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "who,upload,read",
    [
        ("owner", 201, 200),
        ("admin", 201, 200),
        ("labeler", 201, 200),
        ("viewer", 403, 200),
        ("outsider", 404, 404),
    ],
)
def test_roles_on_the_samples_api(team, who, upload, read):
    c = api(team.user(who))
    r = c.post(url(team, "/samples"), {"data": base64.b64encode(jpeg(30)).decode()}, format="json")
    assert r.status_code == upload
    if upload >= 400:
        assert r.json()["error"]["code"] == {403: "forbidden", 404: "not_found"}[upload]
    assert c.get(url(team, "/samples")).status_code == read
    assert c.get(url(team)).status_code == read


def test_anonymous_gets_401_with_the_envelope(team):
    r = APIClient().get(url(team, "/samples"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert "Bearer" in r["WWW-Authenticate"]
    r = APIClient().get(url(team, "/samples"), HTTP_AUTHORIZATION="Bearer nope.nope")
    assert r.status_code == 401


def test_unknown_api_paths_answer_json_404(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_project_endpoint_shape(team):
    c = api(team.user("viewer"))
    body = c.get(url(team)).json()
    assert body == {
        "id": str(team.project.pk),
        "name": team.project.name,
        "task": "single_label",
        "labels": [],
        "samples": {"total": 0, "labeled": 0},
        "deployed_model": None,
    }


def test_labels_endpoint_creates_and_refuses_duplicates(team):
    c = api(team.user("labeler"))
    r = c.post(url(team, "/labels"), {"name": "ants"}, format="json")
    assert r.status_code == 201 and r.json()["name"] == "ants"
    r = c.post(url(team, "/labels"), {"name": "ants"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert [x["name"] for x in c.get(url(team, "/labels")).json()["results"]] == ["ants"]
    assert api(team.user("viewer")).post(url(team, "/labels"), {"name": "x"}, format="json").status_code == 403


def test_export_zips_label_folders_and_samples_csv(team):
    import csv

    c = api(team.user("viewer"))
    from labeling.tests.factories import make_sample

    a = make_sample(team.project, seed=40, labels=["ants"])
    make_sample(team.project, seed=41, labels=["bees"])
    make_sample(team.project, seed=42)
    r = c.get(url(team, "/export"))
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    names = zf.namelist()
    assert (
        f"ants/{a.pk}.jpg" in names
        and any(n.startswith("bees/") for n in names)
        and any(n.startswith("unlabeled/") for n in names)
    )
    rows = list(csv.DictReader(io.StringIO(zf.read("samples.csv").decode())))
    assert {r["labels"] for r in rows} == {"ants", "bees", ""} and set(rows[0]) == {
        "id",
        "sha256",
        "filename",
        "labels",
        "created",
    }
    assert zf.read(f"ants/{a.pk}.jpg") == jpeg(40)
    assert api(team.user("outsider")).get(url(team, "/export")).status_code == 404


def test_multi_label_export_has_labels_csv(team):
    from labeling.tests.factories import make_sample

    team.project.task = "multi_label"
    team.project.save()
    make_sample(team.project, seed=43, labels=["beach", "sunset"])
    r = api(team.user("viewer")).get(url(team, "/export"))
    zf = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    assert "beach;sunset" in zf.read("labels.csv").decode()


def test_control_characters_are_refused_or_stripped_never_a_500(team):
    c = api(team.user("labeler"))
    r = c.post(url(team, "/labels"), {"name": "a\u0000b"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
    r = c.post(
        url(team, "/samples"),
        {"data": base64.b64encode(jpeg(50)).decode(), "labels": ["q\u0000"], "filename": "x\u0000.jpg"},
        format="json",
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
    r = c.post(
        url(team, "/samples"), {"data": base64.b64encode(jpeg(51)).decode(), "filename": "x\u0000y.jpg"}, format="json"
    )
    assert r.status_code == 201 and Sample.objects.get(pk=r.json()["samples"][0]["id"]).filename == "xy.jpg"
    assert c.get(url(team, "/samples?label=a%00b")).status_code == 200


def test_it_pages_samples_by_keyset_through_next_and_previous_links(team):
    from labeling.tests.factories import make_sample

    made = [make_sample(team.project, seed=i) for i in range(7)]
    c = api(team.user("viewer"))
    seen, link, pages = [], url(team, "/samples?page_size=3"), []
    while link:
        body = c.get(link).json()
        assert body["count"] == 7
        seen += [r["id"] for r in body["results"]]
        pages.append(body)
        link = body["next"]
    newest_first = [str(s.pk) for s in sorted(made, key=lambda s: (-s.created.timestamp(), str(s.pk)))]
    assert seen == newest_first and len(pages) == 3
    assert pages[0]["previous"] is None and pages[1]["previous"] is not None
    back = c.get(pages[2]["previous"]).json()
    assert [r["id"] for r in back["results"]] == newest_first[3:6]
    # the contract's page numbers still work
    assert [r["id"] for r in c.get(url(team, "/samples?page=2&page_size=3")).json()["results"]] == newest_first[3:6]
    bad = c.get(url(team, "/samples?cursor=garbage"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_it_writes_the_export_directory_to_disk_a_batch_at_a_time(team, monkeypatch):
    from labeling import services
    from labeling.tests.factories import make_sample
    from labeling.zips import DirectoryOnDiskZipFile

    monkeypatch.setattr(DirectoryOnDiskZipFile, "BATCH", 2)  # several batches for five entries
    made = [make_sample(team.project, seed=i, labels=["ants"] if i % 2 else []) for i in range(5)]
    buf = io.BytesIO()
    assert services.project_export_zip(project=team.project, fileobj=buf) == 5
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    assert z.testzip() is None
    names = z.namelist()
    assert len(names) == 6 and "samples.csv" in names
    assert {n.split("/")[-1].split(".")[0] for n in names if n != "samples.csv"} == {str(s.pk) for s in made}
    assert z.read("samples.csv").decode().count("\n") == 6
