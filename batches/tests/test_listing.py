"""A listing cut short (its worker killed between two committed groups of chunks) resumes where it
stopped, for every source kind: the chunks it makes are the ones an uninterrupted listing makes, and a
folder or S3 prefix that gained an item meanwhile (before the resumption point) neither shifts the
rest nor lists an item twice."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchChunk, BatchResult
from batches.tests.conftest import drive, images, png, tar_bytes, write_folder, zip_bytes

N = 100
NEWCOMER = "b/00000z.png"  # sorts right after the first item in every kind's listing order


class Killed(BaseException):
    """The worker dying mid-listing (not an Exception: nothing may catch it)."""


def _start(kind: str, *, team, tmp_path, settings, request) -> tuple[str, callable]:
    """Start a batch over N items of this kind; returns its id and a function adding NEWCOMER."""
    items = images(N)
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    if kind == "folder":
        write_folder(tmp_path, items)
        settings.PICTOR_IMPORT_ROOTS = [str(tmp_path)]
        source = {"kind": "folder", "path": str(tmp_path)}
        add = lambda: write_folder(tmp_path, [(NEWCOMER, png(7777, bright=True))])  # noqa: E731
    elif kind == "s3":
        from tests.s3 import s3_bucket

        request.getfixturevalue("s3_env")
        s3 = s3_bucket("resume")
        for name, data in items:
            s3.put_object(Bucket="resume", Key=name, Body=data)
        source = {"kind": "s3", "uri": "s3://resume/"}
        add = lambda: s3.put_object(Bucket="resume", Key=NEWCOMER, Body=png(7777, bright=True))  # noqa: E731
    else:
        data = zip_bytes(items) if kind == "zip" else tar_bytes(items)
        r = c.post(
            f"/api/v1/projects/{team.project.pk}/batches/uploads",
            {"file": SimpleUploadedFile(f"a.{kind}", data)},
            format="multipart",
        )
        source = {"kind": "upload", "upload_id": r.json()["upload_id"]}
        add = lambda: None  # noqa: E731  (a stored archive never changes)
    r = c.post(f"/api/v1/projects/{team.project.pk}/batches", {"source": source}, format="json")
    assert r.status_code == 202, r.content
    return r.json()["id"], add


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "s3"])
def test_a_listing_cut_short_resumes_where_it_stopped(kind, team, model, tmp_path, settings, request, monkeypatch):
    settings.PICTOR_BATCH_CHUNK = 10
    monkeypatch.setattr(services, "_LIST_GROUP", 2)  # commits of two chunks: 5 of them for 100 items
    batch_id, add = _start(kind, team=team, tmp_path=tmp_path, settings=settings, request=request)
    flush, calls = services._chunks_flush, []

    def dies_after_two(batch, group):
        calls.append(len(group))
        if len(calls) > 2:
            raise Killed
        return flush(batch, group)

    monkeypatch.setattr(services, "_chunks_flush", dies_after_two)
    with pytest.raises(Killed):
        services.batch_listing_run(batch_id=batch_id)
    assert BatchChunk.objects.filter(batch_id=batch_id).count() == 4
    monkeypatch.setattr(services, "_chunks_flush", flush)
    add()
    drive(batch_id)  # the sweep's re-sent listing, then every chunk
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.status, batch.listed, batch.total, batch.done) == ("succeeded", True, N, N)
    chunks = [c.items for c in BatchChunk.objects.filter(batch_id=batch_id).order_by("index")]
    assert [item[0] for chunk in chunks for item in chunk] == [name for name, _ in _listed_order(kind)]
    keys = list(BatchResult.objects.filter(batch_id=batch_id).order_by("seq").values_list("key", flat=True))
    assert keys == [name for name, _ in _listed_order(kind)]  # none twice, none renamed, none lost


def _listed_order(kind: str):
    items = images(N)
    return sorted(items) if kind in ("folder", "s3") else items


def test_a_folder_listing_resumes_after_any_key_of_a_nested_tree(tmp_path):
    from batches.sources import folder_iter

    names = ["z.png", "a.png", "m/b.png", "m/n/c.png", "m/n/d.png", "m/o.png", "m/p/q/e.png", "b/f.png", "mm/g.png"]
    write_folder(tmp_path, [(name, b"x") for name in names])
    (tmp_path / "empty").mkdir()
    full = [item[0] for item in folder_iter(str(tmp_path))]
    assert sorted(full) == sorted(names) and full[:2] == ["a.png", "z.png"]  # a folder's files first
    for i, key in enumerate(full):
        assert [item[0] for item in folder_iter(str(tmp_path), after=key)] == full[i + 1 :], key
    # The resumption point's folder is gone: what follows it still comes.
    assert [item[0] for item in folder_iter(str(tmp_path), after="m/nz/x.png")] == full[full.index("m/p/q/e.png") :]
