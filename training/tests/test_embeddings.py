"""Embeddings in Django: compute (real ONNX backbones), progress, similar samples, scheduling, status view."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from conftest import datasets_dir
from labeling.models import Sample
from labeling.tests.factories import jpeg_bytes, make_sample
from training import pipeline, selectors, services, tasks
from training.models import Embedding

HYM = datasets_dir() / "hymenoptera_data"
BACKBONES = ["lite0", "lite2"]


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory) -> Path:
    """One ONNX export per backbone per test session (training.embedders also caches per process)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _embedding_settings(settings, model_cache_dir, tmp_path, monkeypatch):
    from config import dispatch

    # A broker failure recorded by an earlier test would keep the status card polling.
    monkeypatch.setattr(dispatch, "_last_failure", 0.0)
    settings.MODEL_CACHE_DIR = model_cache_dir
    settings.PICTOR_BACKBONES = BACKBONES
    settings.PICTOR_EMBED_BATCH = 16
    media = tmp_path / "media"
    media.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}},
    }


def decode(row: Embedding) -> np.ndarray:
    return np.frombuffer(bytes(row.vector), dtype=np.float16).astype(np.float32)


def hymenoptera(n_per_class: int) -> list[tuple[str, bytes]]:
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}; set PICTOR_DATASETS to the datasets folder")
    out = []
    for cls in ("ants", "bees"):
        for path in sorted((HYM / "train" / cls).glob("*.jpg"))[:n_per_class]:
            out.append((cls, path.read_bytes()))
    return out


# ----------------------------------------------------------------------------- compute


def test_compute_writes_one_normalised_float16_row_per_sample_and_backbone_and_is_idempotent(team):
    project = team.project
    samples = [make_sample(project, seed=i) for i in range(5)]
    # batch_size 2 over 5 samples: full batches and a ragged last one.
    assert services.embeddings_compute(project_id=project.pk, batch_size=2) == 10

    rows = Embedding.objects.filter(project_id=project.pk)
    assert rows.count() == 10
    for backbone in BACKBONES:
        got = {r.sample_id: r for r in rows.filter(backbone=backbone)}
        assert set(got) == {s.pk for s in samples}
        for row in got.values():
            assert row.error == ""
            assert len(bytes(row.vector)) == 1280 * 2  # float16
            vector = decode(row)
            assert np.all(np.isfinite(vector))
            assert abs(np.linalg.norm(vector) - 1.0) < 1e-2
    # Different images, different vectors (a constant output would pass the norm check).
    lite0 = np.stack([decode(r) for r in rows.filter(backbone="lite0")])
    assert np.abs(lite0 - lite0[0]).max() > 0.05

    assert services.embeddings_compute(project_id=project.pk) == 0
    assert Embedding.objects.filter(project_id=project.pk).count() == 10
    # New samples only are embedded on the next run.
    make_sample(project, seed=99)
    assert services.embeddings_compute(project_id=project.pk) == 2


def test_same_image_gives_the_same_vector_as_the_embedder_directly(team):
    from training.embedders import embedder_get

    data = hymenoptera(1)[0][1]
    sample = make_sample(team.project, data=data)
    services.embeddings_compute(project_id=team.project.pk, backbones=["lite0"])
    stored = decode(Embedding.objects.get(sample=sample, backbone="lite0"))
    direct = embedder_get("lite0").embed([data])[0]
    assert np.abs(stored - direct).max() < 2e-3  # float16 rounding only


def test_a_lost_or_corrupt_file_gets_an_error_row_and_does_not_block_the_others(team):
    project = team.project
    lost, corrupt, *good = [make_sample(project, seed=i) for i in range(5)]
    default_storage.delete(lost.image_name)
    with default_storage.open(corrupt.image_name, "wb") as handle:  # truncated on disk after upload
        handle.write(b"\xff\xd8\xff\xe0 not a jpeg any more")

    assert services.embeddings_compute(project_id=project.pk) == 10
    for backbone in BACKBONES:
        rows = {r.sample_id: r for r in Embedding.objects.filter(project_id=project.pk, backbone=backbone)}
        assert len(rows) == 5
        for bad in (lost, corrupt):
            assert rows[bad.pk].error and bytes(rows[bad.pk].vector) == b""
        for s in good:
            assert rows[s.pk].error == "" and len(bytes(rows[s.pk].vector)) == 2560
    # Failures are recorded, not retried forever: the project counts as done.
    assert selectors.embedding_progress(project_id=project.pk)["complete"]
    assert services.embeddings_compute(project_id=project.pk) == 0
    # Similar-sample search ignores the error rows.
    ids, matrix = selectors.embedding_matrix(project_id=project.pk, backbone="lite0")
    assert set(ids) == {s.pk for s in good} and matrix.shape == (3, 1280)
    assert selectors.sample_similar(sample=lost) is None


def test_a_sample_deleted_while_its_batch_is_embedded_is_skipped(team):
    from labeling.services import sample_delete
    from training.embedders import embedder_get

    project = team.project
    doomed, *rest = [make_sample(project, seed=i) for i in range(3)]
    real = embedder_get("lite0")

    class DeletingEmbedder:
        def embed(self, images, batch_size=32):
            if doomed.pk and Embedding.objects.filter(sample_id=doomed.pk).count() == 0:
                sample_delete(sample=Sample.objects.get(pk=doomed.pk))
                doomed.pk = None
            return real.embed(images, batch_size=batch_size)

    with mock.patch("training.embedders.embedder_get", return_value=DeletingEmbedder()):
        assert services.embeddings_compute(project_id=project.pk, backbones=["lite0"]) == 2
    assert set(Embedding.objects.values_list("sample_id", flat=True)) == {s.pk for s in rest}


# ----------------------------------------------------------------------------- progress


def test_progress_counts_each_backbone(team):
    project = team.project
    empty = selectors.embedding_progress(project_id=project.pk)
    assert empty == {"total": 0, "per_backbone": {"lite0": 0, "lite2": 0}, "fraction": 1.0, "complete": True}

    for i in range(4):
        make_sample(project, seed=i)
    p = selectors.embedding_progress(project_id=project.pk)
    assert (p["total"], p["fraction"], p["complete"]) == (4, 0.0, False)

    services.embeddings_compute(project_id=project.pk, backbones=["lite0"])
    p = selectors.embedding_progress(project_id=project.pk)
    assert p["per_backbone"] == {"lite0": 4, "lite2": 0}
    assert p["fraction"] == pytest.approx(0.5) and not p["complete"]

    services.embeddings_compute(project_id=project.pk)
    p = selectors.embedding_progress(project_id=project.pk)
    assert p["per_backbone"] == {"lite0": 4, "lite2": 4}
    assert p["fraction"] == 1.0 and p["complete"]

    make_sample(project, seed=10)
    p = selectors.embedding_progress(project_id=project.pk)
    assert p["fraction"] == pytest.approx(8 / 10) and not p["complete"]


# ----------------------------------------------------------------------------- similar samples


def _top3_rates(queries, neighbours, labels) -> tuple[float, float]:
    """(fraction of all top-3 neighbours that share the query's class, fraction of queries whose
    top-3 are mostly of their class)."""
    same = np.array([[labels[n] == labels[q] for n in ns[:3]] for q, ns in zip(queries, neighbours)])
    return float(same.mean()), float((same.mean(axis=1) > 0.5).mean())


def test_similar_samples_on_real_images_are_mostly_the_same_class(team):
    project = team.project
    labels = {}
    for i, (cls, data) in enumerate(hymenoptera(12)):
        labels[make_sample(project, seed=i, data=data).pk] = cls
    services.embeddings_compute(project_id=project.pk)
    samples = list(Sample.objects.filter(project=project).order_by("pk"))
    assert len(samples) == 24

    for backbone in BACKBONES:
        neighbours = []
        for sample in samples:
            similar = selectors.sample_similar(sample=sample, k=5, backbone=backbone)
            assert len(similar) == 5 and sample.pk not in {s.pk for s, _ in similar}
            scores = [score for _, score in similar]
            assert scores == sorted(scores, reverse=True) and all(-1.01 <= x <= 1.01 for x in scores)
            neighbours.append([s.pk for s, _ in similar])
        share, mostly = _top3_rates([s.pk for s in samples], neighbours, labels)
        # Measured on these 12 ants + 12 bees: lite0 share 0.90, mostly 0.92; lite2 0.94, 0.96.
        # Random unit vectors: share 0.48 on average, 0.72 at the 99.9th percentile (2000 draws).
        assert share >= 0.8, (backbone, share)
        assert mostly >= 0.8, (backbone, mostly)

    # The same measure on random vectors stays well below the bar, so the bar means something.
    fake = np.random.default_rng(0).normal(size=(24, 1280))
    sims = fake @ fake.T
    np.fill_diagonal(sims, -np.inf)
    order = [s.pk for s in samples]
    share, _ = _top3_rates(order, [[order[j] for j in np.argsort(-row)[:3]] for row in sims], labels)
    assert share < 0.7


def test_matrix_cache_follows_new_and_deleted_embeddings(team):
    from labeling.services import sample_delete

    project = team.project
    a, b = make_sample(project, seed=1), make_sample(project, seed=2)
    services.embeddings_compute(project_id=project.pk, backbones=["lite0"])
    ids, matrix = selectors.embedding_matrix(project_id=project.pk, backbone="lite0")
    assert set(ids) == {a.pk, b.pk} and matrix.dtype == np.float32
    c = make_sample(project, seed=3)
    assert selectors.sample_similar(sample=c) is None  # not embedded yet
    services.embeddings_compute(project_id=project.pk, backbones=["lite0"])
    assert [s.pk for s, _ in selectors.sample_similar(sample=c, k=5)] != []
    assert len(selectors.embedding_matrix(project_id=project.pk, backbone="lite0")[0]) == 3
    sample_delete(sample=b)
    ids, _ = selectors.embedding_matrix(project_id=project.pk, backbone="lite0")
    assert set(ids) == {a.pk, c.pk}
    assert {s.pk for s, _ in selectors.sample_similar(sample=a)} == {c.pk}


# ----------------------------------------------------------------------------- scheduling


def test_schedule_coalesces_until_the_run_starts(team, django_capture_on_commit_callbacks):
    pid = team.project.pk
    with mock.patch.object(tasks.embed_project, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=pid) is True
            assert pipeline.samples_added(project_id=pid) is False
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=pid) is False  # still pending
        assert send.call_args_list == [mock.call(args=[str(pid)])]

        # The run clears the flag first, so uploads arriving during it queue a follow-up.
        tasks.embed_project(str(pid))
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=pid) is True
        assert send.call_count == 2


def test_nothing_is_queued_before_commit(team, django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.embed_project, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert pipeline.samples_added(project_id=team.project.pk) is True
        assert send.call_count == 0 and len(callbacks) == 1


def test_uploading_samples_queues_one_run_per_project(team, django_capture_on_commit_callbacks):
    from labeling import services as labeling_services

    items = [labeling_services.IngestItem(filename=f"{i}.jpg", data=jpeg_bytes(i)) for i in range(3)]
    with mock.patch.object(tasks.embed_project, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            labeling_services.samples_ingest(project=team.project, items=items, user=team.user("labeler"))
        with django_capture_on_commit_callbacks(execute=True):
            make_sample(team.project, seed=50)  # while the first run is still queued
    assert send.call_args_list == [mock.call(args=[str(team.project.pk)])]


def test_a_broker_outage_releases_the_flag_and_does_not_fail_the_caller(team, django_capture_on_commit_callbacks):
    from config.dispatch import broker_recently_failed

    pid = team.project.pk
    with mock.patch.object(tasks.embed_project, "apply_async", side_effect=ConnectionError("broker down")) as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=pid) is True
        assert send.call_count == 1
    assert broker_recently_failed()  # the status card warns
    with mock.patch.object(tasks.embed_project, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=pid) is True  # not stuck for 10 minutes
        assert send.call_count == 1


def test_a_cache_outage_still_queues_the_run(team, django_capture_on_commit_callbacks):
    from django.core.cache import cache

    with (
        mock.patch.object(tasks.embed_project, "apply_async") as send,
        mock.patch.object(cache, "add", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "delete", side_effect=ConnectionError("cache down")),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            assert pipeline.samples_added(project_id=team.project.pk) is True
        assert send.call_count == 1
        make_sample(team.project, seed=1)
        assert services.embeddings_compute(project_id=team.project.pk, backbones=["lite0"]) == 1


def test_sweep_schedules_only_projects_with_missing_vectors(team, django_capture_on_commit_callbacks):
    done_project = team.project
    make_sample(done_project, seed=1)
    services.embeddings_compute(project_id=done_project.pk)
    from projects.models import Project

    other = Project.objects.exclude(pk=done_project.pk).get()
    make_sample(other, seed=2)
    with mock.patch.object(tasks.embed_project, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.embeddings_sweep() == 1
    assert send.call_args_list == [mock.call(args=[str(other.pk)])]


def test_task_runs_compute(team):
    make_sample(team.project, seed=1)
    assert tasks.embed_project(str(team.project.pk)) == 2
    assert selectors.embedding_progress(project_id=team.project.pk)["complete"]


# ----------------------------------------------------------------------------- status view


def status_url(project) -> str:
    return reverse("embedding_status", kwargs={"project_id": project.pk})


def test_status_view_polls_until_complete(team, client_for):
    c = client_for(team.user("viewer"))
    url = status_url(team.project)
    make_sample(team.project, seed=1)
    make_sample(team.project, seed=2)

    r = c.get(url, HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    body = r.content.decode()
    assert f'hx-get="{url}"' in body and 'hx-trigger="every 2s"' in body and "0/2" in body

    services.embeddings_compute(project_id=team.project.pk, backbones=["lite0"])
    r = c.get(url, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and "50" in r.content.decode() and "hx-trigger" in r.content.decode()

    services.embeddings_compute(project_id=team.project.pk)
    r = c.get(url, HTTP_HX_REQUEST="true")
    assert r.status_code == 286  # htmx stops polling; the final state is still swapped in
    body = r.content.decode()
    assert "hx-get" not in body and "All 2 images have features" in body
    # Without htmx (plain link) a complete status is an ordinary page.
    assert c.get(url).status_code == 200


def test_status_view_of_an_empty_project_is_complete(team, client_for):
    r = client_for(team.user("viewer")).get(status_url(team.project), HTTP_HX_REQUEST="true")
    assert r.status_code == 286 and "hx-get" not in r.content.decode()


@pytest.mark.parametrize(
    "who, expected",
    [("owner", 200), ("admin", 200), ("labeler", 200), ("viewer", 200), ("outsider", 404), (None, 302)],
)
def test_status_view_roles(team, client_for, who, expected):
    make_sample(team.project, seed=1)
    user = team.user(who) if who else None
    r = client_for(user).get(status_url(team.project))
    assert r.status_code == expected
    if who is None:
        assert "/accounts/login/" in r["Location"]
