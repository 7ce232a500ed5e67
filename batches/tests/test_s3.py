"""The S3 source against a real S3-compatible server (moto's, started by tests/s3.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.test import APIClient

from batches.models import Batch, BatchResult
from batches.tests.conftest import drive, images
from tests.s3 import s3_bucket

pytestmark = pytest.mark.slow


def test_it_runs_an_s3_prefix_to_completion(team, model, s3_env, monkeypatch):
    # 300 items over three listing pages and five chunks: the 2,000-item S3 run is test_worker.py's,
    # with a worker killed mid-way.
    from batches import sources

    monkeypatch.setattr(sources, "S3_PAGE", 128)
    client = s3_bucket("photos")
    items = images(300)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda it: client.put_object(Bucket="photos", Key=f"shoot/{it[0]}", Body=it[1]), items))
    client.put_object(Bucket="photos", Key="shoot/readme.txt", Body=b"skipped: not an image")
    client.put_object(Bucket="photos", Key="other/x.png", Body=items[0][1])  # outside the prefix
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches",
        {"source": {"kind": "s3", "uri": "s3://photos/shoot/"}},
        format="json",
    )
    assert r.status_code == 202, r.content
    drive(r.json()["id"])
    batch = Batch.objects.get(pk=r.json()["id"])
    assert (batch.status, batch.total, batch.done, batch.failed) == ("succeeded", 300, 300, 0)
    keys = set(BatchResult.objects.filter(batch=batch).values_list("key", flat=True))
    assert keys == {f"shoot/{name}" for name, _ in items}
    r = c.get(f"/api/v1/projects/{team.project.pk}/batches/{batch.pk}/results", {"format": "series", "page": 1})
    assert b"s3://photos/shoot/b/00000.png" in b"".join(r.streaming_content)


@pytest.mark.parametrize("uri, why", [("s3://no-such-bucket/x", "NoSuchBucket"), ("s3://photos/empty/", "Nothing")])
def test_a_missing_bucket_or_an_empty_prefix_is_refused(team, model, s3_env, uri, why):
    s3_bucket("photos")
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    r = c.post(f"/api/v1/projects/{team.project.pk}/batches", {"source": {"kind": "s3", "uri": uri}}, format="json")
    assert r.status_code == 400 and why in r.json()["error"]["message"], r.content
    assert not Batch.objects.exists()
