"""Every listed item gets exactly one result, even when its name cannot be the result's key as it is:
two archive members with the same name (a zip written twice, a tar appended to) are both classified,
the later in the listing under "<name>#<position>" whichever chunk ran first; a name longer than a
key can hold is shortened and marked the same way. Counts follow the rows, so total == done + failed == results."""

from __future__ import annotations

import warnings

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchChunk, BatchResult
from batches.tests.conftest import drive, images, png, tar_bytes, write_folder, zip_bytes


def _start_upload(team, data: bytes, filename: str) -> str:
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches/uploads",
        {"file": SimpleUploadedFile(filename, data)},
        format="multipart",
    )
    assert r.status_code == 201, r.content
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches",
        {"source": {"kind": "upload", "upload_id": r.json()["upload_id"]}},
        format="json",
    )
    assert r.status_code == 202, r.content
    return r.json()["id"]


def _archive(kind: str, items) -> bytes:
    if kind == "tar":
        return tar_bytes(items)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name": writing one is the point
        return zip_bytes(items)


def _assert_one_result_per_item(batch_id, n: int) -> dict[int, str]:
    batch = Batch.objects.get(pk=batch_id)
    rows = dict(BatchResult.objects.filter(batch=batch).values_list("seq", "key"))
    state = (batch.status, batch.total, batch.done + batch.failed, len(rows))
    assert state == ("succeeded", n, n, n), state
    assert sorted(rows) == list(range(n)) and len(set(rows.values())) == n
    return rows


@pytest.mark.parametrize("kind, order", [("zip", "listing"), ("tar", "listing"), ("zip", "reversed")])
def test_members_with_the_same_name_each_get_a_result(team, model, kind, order):
    items = images(130)  # chunks of 64: positions 0-63, 64-127, 128-...
    items.append(("b/00128.png", png(5000, bright=True)))  # position 130: same chunk as its twin
    items.append(("b/00000.png", png(5001, bright=True)))  # position 131: another chunk than its twin
    batch_id = _start_upload(team, _archive(kind, items), f"twins.{kind}")
    services.batch_listing_run(batch_id=batch_id)
    chunks = BatchChunk.objects.filter(batch_id=batch_id).order_by("index" if order == "listing" else "-index")
    for chunk_id in chunks.values_list("pk", flat=True):  # reversed: the later twin is classified first
        services.batch_chunk_run(chunk_id=chunk_id)
    rows = _assert_one_result_per_item(batch_id, 132)
    assert rows[0] == "b/00000.png" and rows[128] == "b/00128.png"
    assert rows[130] == "b/00128.png#131" and rows[131] == "b/00000.png#132"
    twin = BatchResult.objects.get(batch_id=batch_id, seq=131)
    assert twin.error is None and twin.label == "bright"
    assert twin.sha256 != BatchResult.objects.get(batch_id=batch_id, seq=0).sha256  # its own bytes
    # Read again (thumbnails, send to labeling) by its position: the twin's bytes, not the first's.
    assert services.result_bytes(batch=twin.batch, result=twin) == items[131][1]


def test_a_redelivered_chunk_with_a_renamed_twin_writes_nothing_twice(team, model):
    items = [*images(10), ("b/00000.png", png(5000, bright=True))]
    batch_id = _start_upload(team, _archive("zip", items), "twins.zip")
    drive(batch_id)
    BatchChunk.objects.filter(batch_id=batch_id).update(status="pending")  # as if never acknowledged
    Batch.objects.filter(pk=batch_id).update(status="running")
    for chunk in BatchChunk.objects.filter(batch_id=batch_id):
        assert services.batch_chunk_run(chunk_id=chunk.pk) == "done"
    assert BatchResult.objects.filter(batch_id=batch_id).count() == 11
    assert BatchResult.objects.filter(batch_id=batch_id, key="b/00000.png#11").exists()


def test_a_name_longer_than_a_key_is_shortened_and_unique(team, model, tmp_path, settings):
    long = "/".join(["x" * 200] * 6)  # 1,205 characters: a folder path may be that long
    items = [(f"{long}/a.png", png(1, bright=True)), (f"{long}/b.png", png(2, bright=False))]
    write_folder(tmp_path, items)
    settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches",
        {"source": {"kind": "folder", "path": str(tmp_path)}},
        format="json",
    )
    drive(r.json()["id"])
    rows = _assert_one_result_per_item(r.json()["id"], 2)
    assert all(len(key) == 1024 for key in rows.values())
    assert rows[0].endswith("…#1") and rows[1].endswith("…#2") and rows[0].startswith(long[:1000])
    labels = dict(BatchResult.objects.filter(batch_id=r.json()["id"]).values_list("seq", "label"))
    assert labels == {0: "bright", 1: "dark"}
