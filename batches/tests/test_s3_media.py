"""Media on S3 (django-storages) against the same moto server: samples, the model's artifact and a
batch's uploaded archive live in the bucket, and a batch over that archive runs to completion."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from batches.models import Batch, BatchUpload
from batches.tests.conftest import drive, images, train_pixels_model, zip_bytes
from tests.s3 import s3_bucket

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_media(s3_env, settings):
    pytest.importorskip("storages")
    client = s3_bucket("media")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "media",
                "endpoint_url": s3_env["AWS_ENDPOINT_URL"],
                "access_key": s3_env["AWS_ACCESS_KEY_ID"],
                "secret_key": s3_env["AWS_SECRET_ACCESS_KEY"],
                "region_name": "us-east-1",
                # Opened archives spill to disk past 8 MB instead of sitting in memory.
                "max_memory_size": 8 * 1024 * 1024,
            },
        },
    }
    return client


def test_media_on_s3_and_a_batch_over_an_archive_stored_there(team, pixels, s3_media, monkeypatch):
    model = train_pixels_model(team.project)
    keys = {o["Key"] for o in s3_media.list_objects_v2(Bucket="media").get("Contents", [])}
    assert model.artifact_name in keys and any(k.endswith(".webp") for k in keys)  # head and thumbnails
    c = APIClient()
    c.force_authenticate(team.user("admin"))
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches/uploads",
        {"file": SimpleUploadedFile("a.zip", zip_bytes(images(300)))},
        format="multipart",
    )
    assert r.status_code == 201, r.content
    upload = BatchUpload.objects.get(pk=r.json()["upload_id"])
    assert s3_media.head_object(Bucket="media", Key=upload.storage_name)["ContentLength"] == upload.bytes
    r = c.post(
        f"/api/v1/projects/{team.project.pk}/batches",
        {"source": {"kind": "upload", "upload_id": str(upload.pk)}},
        format="json",
    )
    assert r.status_code == 202, r.content
    # Workers read members by ranged GETs: never the whole archive per chunk.
    from storages.backends.s3 import S3File

    opened = []
    real_init = S3File.__init__
    monkeypatch.setattr(S3File, "__init__", lambda self, *a, **kw: opened.append(a) or real_init(self, *a, **kw))
    drive(r.json()["id"])
    batch = Batch.objects.get(pk=r.json()["id"])
    assert (batch.status, batch.total, batch.done) == ("succeeded", 300, 300)
    assert not [a for a in opened if "batches/" in str(a[0])]
    rows = list(c.get(f"/api/v1/projects/{team.project.pk}/batches/{batch.pk}/results").streaming_content)
    assert len(b"".join(rows).splitlines()) == 300
