"""The batch jobs API end to end in this process: upload, start, list in chunks, classify, results in
three formats with filters, pause / resume / cancel, bad sources, the pinned model, roles."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from batches.models import Batch, BatchChunk, BatchResult, BatchUpload
from batches.tests.conftest import drive, images, png, tar_bytes, train_pixels_model, write_folder, zip_bytes


def api(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def base(project) -> str:
    return f"/api/v1/projects/{project.pk}/batches"


def upload(c, project, data: bytes, name: str = "a.zip"):
    return c.post(f"{base(project)}/uploads", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def start(c, project, source: dict, **extra):
    return c.post(base(project), {"source": source, **extra}, format="json")


def results(c, project, batch_id, **query) -> list[dict]:
    r = c.get(f"{base(project)}/{batch_id}/results", {"format": "jsonl", **query})
    assert r.status_code == 200, r.content
    return [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]


def test_it_runs_a_2000_image_zip_to_completion_with_every_item_answered_once(team, model):
    items = images(2000)
    items[7] = (items[7][0], b"\x89PNG\r\n\x1a\n broken")  # a corrupt item: an error, the batch goes on
    c = api(team.user("admin"))
    r = upload(c, team.project, zip_bytes(items))
    assert r.status_code == 201, r.content
    assert r.json()["bytes"] > 0
    r = start(c, team.project, {"kind": "upload", "upload_id": r.json()["upload_id"]})
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["status"] == "queued" and body["model"] == {"id": str(model.pk), "version": model.version}
    drive(body["id"])
    r = c.get(f"{base(team.project)}/{body['id']}")
    state = r.json()
    assert state["status"] == "succeeded", state
    assert (state["total"], state["done"], state["failed"]) == (2000, 1999, 1)
    assert state["items_per_second"] > 0 and state["eta_seconds"] == 0 and state["finished"]
    assert BatchResult.objects.filter(batch_id=body["id"]).count() == 2000
    assert BatchChunk.objects.filter(batch_id=body["id"]).count() == 2000 // 64 + 1
    rows = results(c, team.project, body["id"])
    assert [row["key"] for row in rows] == [name for name, _ in items]  # listing order
    broken = rows[7]
    assert set(broken) == {"key", "error"} and broken["error"]["code"] == "invalid_image"
    good = [row for row in rows if "error" not in row]
    # The model tells bright from dark: the folder names (b/, d/) are the truth.
    right = sum(row["label"] == ("bright" if row["key"].startswith("b/") else "dark") for row in good)
    assert right / len(good) > 0.95
    assert all(len(row["sha256"]) == 64 and row["labels"][0]["label"] == row["label"] for row in good)


def test_it_runs_a_tar_and_a_gzipped_bzipped_and_xz_tar(team, model):
    c = api(team.user("owner"))
    for mode, name in (("w", "a.tar"), ("w:gz", "a.tar.gz"), ("w:bz2", "a.tar.bz2"), ("w:xz", "a.tar.xz")):
        r = upload(c, team.project, tar_bytes(images(150), mode=mode), name=name)
        assert r.status_code == 201, r.content
        assert BatchUpload.objects.get(pk=r.json()["upload_id"]).kind == "tar"
        r = start(c, team.project, {"kind": "upload", "upload_id": r.json()["upload_id"]}, top_k=1)
        drive(r.json()["id"])
        batch = Batch.objects.get(pk=r.json()["id"])
        assert (batch.status, batch.total, batch.done) == ("succeeded", 150, 150)
        assert all(len(row["labels"]) == 1 for row in results(c, team.project, batch.pk))


def test_it_runs_a_2000_image_folder_under_an_import_root(team, model, tmp_path, settings):
    root = tmp_path / "archive"
    write_folder(root / "photos", images(2000))
    (root / "photos" / ".hidden.png").write_bytes(b"x")
    (root / "photos" / "notes.txt").write_text("not an image")
    settings.PICTOR_IMPORT_ROOTS = [str(root)]
    c = api(team.user("admin"))
    r = start(c, team.project, {"kind": "folder", "path": str(root / "photos")})
    assert r.status_code == 202, r.content
    drive(r.json()["id"])
    batch = Batch.objects.get(pk=r.json()["id"])
    assert (batch.status, batch.total, batch.done, batch.failed) == ("succeeded", 2000, 2000, 0)
    keys = list(BatchResult.objects.filter(batch=batch).order_by("seq").values_list("key", flat=True))
    assert keys == sorted(name for name, _ in images(2000)) and len(set(keys)) == 2000


def test_results_download_in_three_formats_with_filters(team, model, tmp_path, settings):
    root = tmp_path / "root"
    write_folder(root, images(40))
    settings.PICTOR_IMPORT_ROOTS = [str(root)]
    c = api(team.user("admin"))
    batch_id = start(c, team.project, {"kind": "folder", "path": str(root)}).json()["id"]
    drive(batch_id)
    viewer = api(team.user("viewer"))
    everything = results(viewer, team.project, batch_id)
    assert len(everything) == 40
    bright = results(viewer, team.project, batch_id, label="bright")
    assert bright and all(row["label"] == "bright" for row in bright)
    assert len(bright) + len(results(viewer, team.project, batch_id, label="dark")) == 40
    confs = sorted(row["confidence"] for row in everything)
    cut = confs[len(confs) // 2]
    low = results(viewer, team.project, batch_id, max_confidence=cut)
    high = results(viewer, team.project, batch_id, min_confidence=cut)
    assert all(row["confidence"] <= cut for row in low) and all(row["confidence"] >= cut for row in high)
    assert len(low) + len(high) >= 40

    r = viewer.get(f"{base(team.project)}/{batch_id}/results", {"format": "csv", "label": "dark"})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert len(table) == 40 - len(bright) and {row["label"] for row in table} == {"dark"}
    assert set(table[0]) == {
        "key",
        "sha256",
        "label",
        "confidence",
        "labels",
        "error_code",
        "error_message",
        "segments",
    }

    r = viewer.get(f"{base(team.project)}/{batch_id}/results", {"format": "series"})
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    series = json.loads(b"".join(r.streaming_content))["series"]
    assert len(series) == 40 * 2  # every label of every item, whole-frame
    entry = series[0]
    assert entry["libraryId"] == str(team.project.pk) and entry["object"]["uri"].startswith("file://")
    assert entry["object"]["boundingPoly"][2] == {"x": 1, "y": 1}

    r = viewer.get(f"{base(team.project)}/{batch_id}/results", {"format": "csv", "page": 2})
    assert b"".join(r.streaming_content).decode().count("\n") == 1  # 40 items fit one page: a header only
    assert results(viewer, team.project, batch_id, page=1) == everything
    r = viewer.get(f"{base(team.project)}/{batch_id}/results", {"format": "xml"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    "source, why",
    [
        ({"kind": "folder", "path": "/definitely/not/here"}, "outside"),
        ({"kind": "folder", "path": "MISSING"}, "does not exist"),
        ({"kind": "folder", "path": "OUTSIDE"}, "outside"),
        ({"kind": "folder", "path": "ESCAPE"}, "outside"),
        ({"kind": "folder", "path": "FILE"}, "not a folder"),
        ({"kind": "folder", "path": ""}, "path"),
        ({"kind": "folder"}, "path"),
        ({"kind": "upload", "upload_id": "00000000-0000-0000-0000-000000000000"}, "No such upload"),
        ({"kind": "upload", "upload_id": "not-a-uuid"}, "upload_id"),
        ({"kind": "upload"}, "upload_id"),
        ({"kind": "s3", "uri": "http://bucket/x"}, "s3://"),
        ({"kind": "s3", "uri": "s3:///photos/"}, "needs a bucket"),
        ({"kind": "s3"}, "uri"),
        ({"kind": "tape"}, "kind"),
        ("just a string", "kind"),
    ],
)
def test_bad_sources_answer_400_and_create_nothing(team, model, tmp_path, settings, source, why):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "escape").symlink_to(tmp_path / "elsewhere")
    (root / "a.png").write_bytes(png(1, bright=True))
    settings.PICTOR_IMPORT_ROOTS = [str(root)]
    if isinstance(source, dict) and "path" in source:
        source = {
            **source,
            "path": {
                "MISSING": str(root / "nope"),
                "OUTSIDE": str(tmp_path / "elsewhere"),
                "ESCAPE": str(root / "escape"),
                "FILE": str(root / "a.png"),
            }.get(source["path"], source["path"]),
        }
    r = start(api(team.user("admin")), team.project, source)
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid" and why in json.dumps(r.json())
    assert not Batch.objects.exists() and not BatchChunk.objects.exists()


def test_folder_sources_are_off_without_import_roots(team, model, tmp_path, settings):
    settings.PICTOR_IMPORT_ROOTS = []
    r = start(api(team.user("admin")), team.project, {"kind": "folder", "path": str(tmp_path)})
    assert r.status_code == 400 and "No import roots" in r.json()["error"]["message"], r.content
    assert not Batch.objects.exists()


def test_a_folder_the_server_cannot_read_is_refused(team, model, tmp_path, settings, monkeypatch):
    from batches import sources

    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    # The tests run as root, who reads everything: the permission check is what is tested here.
    monkeypatch.setattr(sources.os, "access", lambda path, mode: path != str(tmp_path))
    r = start(api(team.user("admin")), team.project, {"kind": "folder", "path": str(tmp_path)})
    assert r.status_code == 400 and "not readable" in r.json()["error"]["message"], r.content
    assert not Batch.objects.exists()


def test_an_upload_of_another_project_or_gone_from_storage_is_refused(team, model):
    from django.core.files.storage import default_storage

    from batches import services

    other = team.user("outsider").memberships.first().project
    theirs = services.batch_upload_create(project=other, fileobj=io.BytesIO(zip_bytes(images(2))))
    r = start(api(team.user("admin")), team.project, {"kind": "upload", "upload_id": str(theirs.pk)})
    assert r.status_code == 400 and "No such upload" in r.json()["error"]["message"], r.content
    r = upload(api(team.user("admin")), team.project, zip_bytes(images(2)))
    ours = BatchUpload.objects.get(pk=r.json()["upload_id"])
    default_storage.delete(ours.storage_name)
    r = start(api(team.user("admin")), team.project, {"kind": "upload", "upload_id": str(ours.pk)})
    assert r.status_code == 400 and "gone from storage" in r.json()["error"]["message"], r.content
    assert not Batch.objects.exists()


def test_an_upload_without_a_file_is_refused(team, model):
    r = api(team.user("admin")).post(f"{base(team.project)}/uploads", {}, format="multipart")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid" and "file" in json.dumps(r.json())
    assert not BatchUpload.objects.exists()


def test_an_unreachable_s3_endpoint_is_refused(team, model, monkeypatch):
    from tests.procs import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    r = start(api(team.user("admin")), team.project, {"kind": "s3", "uri": "s3://bucket/photos/"})
    assert r.status_code == 400 and "cannot be reached" in r.json()["error"]["message"], r.content
    assert not Batch.objects.exists()


def test_s3_without_credentials_is_refused(team, model, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    r = start(api(team.user("admin")), team.project, {"kind": "s3", "uri": "s3://bucket/photos/"})
    assert r.status_code == 400 and "credentials" in r.json()["error"]["message"]
    assert not Batch.objects.exists()


def _bad_checksum_tar() -> bytes:
    data = bytearray(tar_bytes(images(2)))
    data[148:156] = b"0000000\0"  # the first header's checksum no longer matches
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, not an archive",
        b"",
        zip_bytes(images(3))[:-30],
        b"PK\x05\x06" + b"\0" * 10,
        b"\x1f\x8b\x08garbage",
        gzip.compress(b"plain text, no tar inside" * 40),
        bz2.compress(b"plain text, no tar inside" * 40),
        lzma.compress(b"plain text, no tar inside" * 40),
        bz2.compress(b"not bzip2 all the way")[:-8],
        _bad_checksum_tar(),
    ],
    ids=[
        "not-an-archive",
        "empty",
        "truncated-zip",
        "broken-eocd",
        "bad-gzip",
        "gzip-no-tar",
        "bz2-no-tar",
        "xz-no-tar",
        "truncated-bz2",
        "bad-tar",
    ],
)
def test_unreadable_archives_are_refused_at_upload(team, model, data):
    from django.core.files.storage import default_storage

    r = upload(api(team.user("admin")), team.project, data)
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid"
    assert not BatchUpload.objects.exists()
    folder = f"batches/{team.project.pk}"
    assert not default_storage.exists(folder) or default_storage.listdir(folder) == ([], [])


def test_a_batch_needs_a_model(team, pixels, tmp_path, settings):
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    r = start(api(team.user("admin")), team.project, {"kind": "folder", "path": str(tmp_path)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_model"
    r = start(
        api(team.user("admin")),
        team.project,
        {"kind": "folder", "path": str(tmp_path)},
        model="00000000-0000-0000-0000-000000000000",
    )
    assert r.status_code == 400
    assert not Batch.objects.exists()


def test_pause_resume_cancel(team, model, tmp_path, settings, django_capture_on_commit_callbacks, monkeypatch):
    from batches import pipeline, services

    sent = []
    monkeypatch.setattr(pipeline, "enqueue", lambda task, *, args, **kw: sent.append((task, args)) or True)

    write_folder(tmp_path, images(200))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    c = api(team.user("admin"))
    batch_id = start(c, team.project, {"kind": "folder", "path": str(tmp_path)}).json()["id"]
    services.batch_listing_run(batch_id=batch_id)
    chunks = list(BatchChunk.objects.filter(batch_id=batch_id).order_by("index").values_list("pk", flat=True))
    assert len(chunks) == 4
    services.batch_chunk_run(chunk_id=chunks[0])
    r = c.post(f"{base(team.project)}/{batch_id}/pause")
    assert r.status_code == 202 and r.json()["status"] == "paused"
    # A chunk delivered while paused does nothing; it stays pending for the resume.
    assert services.batch_chunk_run(chunk_id=chunks[1]) == "paused"
    state = c.get(f"{base(team.project)}/{batch_id}").json()
    assert (state["done"], state["status"]) == (64, "paused") and state["eta_seconds"] is None or True
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(f"{base(team.project)}/{batch_id}/resume")
    assert r.status_code == 202 and r.json()["status"] == "running"
    assert sent == [(pipeline.CHUNK, [pk]) for pk in chunks[1:]]  # the pending chunks are queued again
    services.batch_chunk_run(chunk_id=chunks[1])
    r = c.post(f"{base(team.project)}/{batch_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["finished"]
    assert services.batch_chunk_run(chunk_id=chunks[2]) == "cancelled"
    assert BatchResult.objects.filter(batch_id=batch_id).count() == 128  # what ran before the cancel stays
    for action in ("pause", "resume", "cancel"):
        r = c.post(f"{base(team.project)}/{batch_id}/{action}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


def test_a_redelivered_chunk_writes_nothing_twice(team, model, tmp_path, settings):
    from batches import services

    write_folder(tmp_path, images(100))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    batch_id = start(api(team.user("admin")), team.project, {"kind": "folder", "path": str(tmp_path)}).json()["id"]
    services.batch_listing_run(batch_id=batch_id)
    services.batch_listing_run(batch_id=batch_id)  # a redelivered listing adds no chunk
    first = BatchChunk.objects.filter(batch_id=batch_id).order_by("index").first()
    # A worker died after writing part of the chunk: the redelivery redoes only the rest.
    BatchResult.objects.bulk_create(
        [BatchResult(batch_id=batch_id, seq=0, key=first.items[0][0], label="dark", confidence=0.5, top=[])]
    )
    for _ in range(2):
        for chunk in BatchChunk.objects.filter(batch_id=batch_id):
            services.batch_chunk_run(chunk_id=chunk.pk)
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.status, batch.total, batch.done, batch.failed) == ("succeeded", 100, 100, 0)
    assert BatchResult.objects.filter(batch=batch).count() == 100


def test_the_model_is_pinned_across_a_deploy(team, model, tmp_path, settings):
    from batches import services
    from training.models import ModelVersion

    write_folder(tmp_path, images(80))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    c = api(team.user("admin"))
    batch_id = start(c, team.project, {"kind": "folder", "path": str(tmp_path)}).json()["id"]
    services.batch_listing_run(batch_id=batch_id)
    # A new model with a third label is trained and deployed while the batch runs.
    newer = train_pixels_model(team.project, labels=("bright", "dark", "grey"), offset=800_000)
    assert newer.pk != model.pk and newer.deployed
    for chunk in BatchChunk.objects.filter(batch_id=batch_id):
        services.batch_chunk_run(chunk_id=chunk.pk)
    state = c.get(f"{base(team.project)}/{batch_id}").json()
    assert state["model"] == {"id": str(model.pk), "version": model.version} and state["status"] == "succeeded"
    labels = {x["label"] for row in results(c, team.project, batch_id) for x in row["labels"]}
    assert labels == {"bright", "dark"}
    # Quick-model pruning keeps it (the batch protects it), and it cannot be deleted by hand.
    from training import services as training_services

    for _ in range(6):
        ModelVersion.objects.create(
            project=team.project, version=ModelVersion.objects.count() + 10, mode="quick", features="pixels"
        )
    training_services.quick_models_prune(project=team.project, keep=1)
    assert ModelVersion.objects.filter(pk=model.pk).exists()
    r = c.delete(f"/api/v1/projects/{team.project.pk}/models/{model.pk}")
    assert r.status_code == 409 and "in use" in r.json()["error"]["message"]
    # Named explicitly, an older version runs even though another is deployed.
    r = start(c, team.project, {"kind": "folder", "path": str(tmp_path)}, model=str(model.pk))
    assert r.json()["model"]["id"] == str(model.pk)


def test_to_samples_by_keys_and_by_confidence(team, model, tmp_path, settings, django_capture_on_commit_callbacks):
    from batches import services
    from labeling.models import Sample

    write_folder(tmp_path, images(30))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    batch_id = start(api(team.user("admin")), team.project, {"kind": "folder", "path": str(tmp_path)}).json()["id"]
    drive(batch_id)
    before = Sample.objects.filter(project=team.project).count()
    c = api(team.user("labeler"))
    keys = ["b/00000.png", "d/00001.png"]
    with django_capture_on_commit_callbacks() as callbacks:
        r = c.post(f"{base(team.project)}/{batch_id}/to-samples", {"keys": keys}, format="json")
    assert r.status_code == 202 and r.json() == {"items": 2} and callbacks
    assert services.to_samples_run(batch_id=batch_id, keys=keys, max_confidence=None) == 2
    assert services.to_samples_run(batch_id=batch_id, keys=keys, max_confidence=None) == 0  # twice: no duplicates
    batch_samples = Sample.objects.filter(project=team.project, source="batch")
    assert sorted(batch_samples.values_list("filename", flat=True)) == keys
    assert Sample.objects.filter(project=team.project).count() == before + 2
    lowest = min(BatchResult.objects.filter(batch_id=batch_id).values_list("confidence", flat=True))
    r = c.post(f"{base(team.project)}/{batch_id}/to-samples", {"max_confidence": lowest}, format="json")
    assert r.status_code == 202 and r.json()["items"] >= 1
    services.to_samples_run(batch_id=batch_id, keys=None, max_confidence=lowest)
    assert batch_samples.count() >= 3 - ("b/00000.png" in keys and 0)
    r = c.post(f"{base(team.project)}/{batch_id}/to-samples", {}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"


def test_roles_owner_admin_start_labeler_sends_viewer_reads_outsider_sees_nothing(team, model, tmp_path, settings):
    write_folder(tmp_path, images(4))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    source = {"kind": "folder", "path": str(tmp_path)}
    batch_id = start(api(team.user("owner")), team.project, source).json()["id"]
    drive(batch_id)
    b = base(team.project)
    reads = [f"{b}", f"{b}/{batch_id}", f"{b}/{batch_id}/results"]
    steer = [f"{b}/{batch_id}/pause", f"{b}/{batch_id}/cancel"]
    for role in ("owner", "admin", "labeler", "viewer"):
        c = api(team.user(role))
        for url in reads:
            assert c.get(url).status_code == 200, (role, url)
        writes = start(c, team.project, source).status_code
        assert writes == (202 if role in ("owner", "admin") else 403), role
        assert upload(c, team.project, zip_bytes(images(2))).status_code == (201 if role in ("owner", "admin") else 403)
        sends = c.post(f"{b}/{batch_id}/to-samples", {"keys": ["b/00000.png"]}, format="json").status_code
        assert sends == (403 if role == "viewer" else 202), role
    for url in steer:
        assert api(team.user("labeler")).post(url).status_code == 403
        assert api(team.user("admin")).post(url).status_code in (202, 409)
    outsider = api(team.user("outsider"))
    for url in reads:
        r = outsider.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
    for url in [*steer, f"{b}/{batch_id}/resume", f"{b}/{batch_id}/to-samples", b, f"{b}/uploads"]:
        assert outsider.post(url, {}, format="json").status_code == 404, url
    assert APIClient().get(reads[0]).status_code == 401
    # Another project's batch is not reachable through this project's URL.
    other = team.user("outsider").memberships.first().project
    assert api(team.user("outsider")).get(f"/api/v1/projects/{other.pk}/batches/{batch_id}").status_code == 404


def test_a_multi_label_project_answers_present_labels_and_filters_on_them(team, pixels, tmp_path, settings):
    from projects.models import Project

    Project.objects.filter(pk=team.project.pk).update(task=Project.Task.MULTI_LABEL)
    team.project.refresh_from_db()
    train_pixels_model(team.project, per_label=8)
    write_folder(tmp_path, images(20))
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    c = api(team.user("admin"))
    batch_id = start(c, team.project, {"kind": "folder", "path": str(tmp_path)}).json()["id"]
    drive(batch_id)
    rows = results(c, team.project, batch_id)
    assert len(rows) == 20 and all("present" in row and "label" not in row for row in rows)
    assert all({"threshold", "present"} <= set(row["labels"][0]) for row in rows)
    bright = results(c, team.project, batch_id, label="bright")
    assert bright and all("bright" in row["present"] for row in bright)
    assert all(row["key"].startswith("b/") for row in bright)
    r = c.get(f"{base(team.project)}/{batch_id}/results", {"format": "csv"})
    table = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert {row["label"] for row in table if row["key"].startswith("b/")} == {"bright"}


def test_an_archive_over_the_upload_limit_is_refused_and_not_kept(team, model, settings):
    from django.core.files.storage import default_storage

    settings.PICTOR_BATCH_MAX_UPLOAD_BYTES = 5000
    r = upload(api(team.user("admin")), team.project, zip_bytes(images(100)))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert not BatchUpload.objects.exists()
    folder = f"batches/{team.project.pk}"
    assert not default_storage.exists(folder) or default_storage.listdir(folder) == ([], [])
