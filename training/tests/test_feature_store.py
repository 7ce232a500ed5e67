"""The feature store: append, torn appends, ANN against exact search, rebuild from the database."""

import shutil
import uuid

import numpy as np
import pytest

from labeling.tests.factories import make_sample
from training import selectors, services
from training.ml.store import FeatureStore
from training.models import Embedding, HeldOutPrediction
from training.tests.factories import make_model


def _unit(rng, n, d, centres=20):
    C = rng.normal(size=(centres, d))
    X = C[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _keys(n):
    return np.array([uuid.uuid4().bytes for _ in range(n)], dtype="S16")


def test_it_appends_rows_and_maps_them_back(tmp_path):
    store = FeatureStore(tmp_path / "p" / "lite0")
    assert store.snapshot() is None
    rng = np.random.default_rng(0)
    X, keys = _unit(rng, 300, 64), _keys(300)
    with store.locked():
        store.append(seqs=np.arange(1, 101), keys=keys[:100], vectors=X[:100])
        store.append(seqs=np.arange(101, 301), keys=keys[100:], vectors=X[100:])
    snap = store.snapshot()
    assert (snap.n, snap.dim, snap.last_seq) == (300, 64, 300)
    assert isinstance(snap.vectors, np.memmap)  # mapped, not read into the process
    np.testing.assert_allclose(snap.matrix(np.array([5, 250])), X[[5, 250]], atol=1e-3)
    rows = snap.rows_for(np.concatenate([keys[[7, 299, 0]], _keys(1)]))
    assert rows.tolist() == [7, 299, 0, -1]
    assert snap.row_for(keys[42]) == 42
    with store.locked():
        with pytest.raises(ValueError):
            store.append(seqs=[301], keys=_keys(1), vectors=np.zeros((1, 32), np.float32))


def test_it_cuts_back_an_append_that_died_half_way(tmp_path):
    store = FeatureStore(tmp_path / "s")
    rng = np.random.default_rng(1)
    with store.locked():
        store.append(seqs=np.arange(1, 11), keys=_keys(10), vectors=_unit(rng, 10, 16))
    # a writer killed after the vectors and keys, before the sequence numbers that commit them
    with open(store.root / "vectors.bin", "ab") as f:
        f.write(b"\0" * 16 * 2 * 3)
    with open(store.root / "keys.bin", "ab") as f:
        f.write(b"x" * 16 * 2)
    assert store.snapshot().n == 10
    with store.locked():
        assert store.append(seqs=[11], keys=_keys(1), vectors=_unit(rng, 1, 16)) == 11
    snap = store.snapshot()
    assert snap.n == 11 and (store.root / "vectors.bin").stat().st_size == 11 * 16 * 2


def test_it_ann_search_agrees_with_exact_search(tmp_path):
    store = FeatureStore(tmp_path / "ann")
    rng = np.random.default_rng(2)
    X, keys = _unit(rng, 6000, 128), _keys(6000)
    with store.locked():
        store.append(seqs=np.arange(1, 5001), keys=keys[:5000], vectors=X[:5000])
        assert store.ann_update(min_rows=1000) == "built"
        store.append(seqs=np.arange(5001, 6001), keys=keys[5000:], vectors=X[5000:])  # an unindexed tail
        assert store.ann_update(min_rows=1000, tail_max=5000) == "current"
    snap = store.snapshot()
    assert snap.ann is not None and snap.ann_rows == 5000
    overlap = []
    for i in rng.choice(6000, 60, replace=False):
        approx, scores = snap.search(X[i], 10, exclude_key=bytes(keys[i]))
        exact, exact_scores = snap.search(X[i], 10, exclude_key=bytes(keys[i]), exact=True)
        assert i not in approx and list(scores) == sorted(scores, reverse=True)
        overlap.append(len(set(approx) & set(exact)) / 10)
        # re-ranked on the stored vectors: a neighbour's score is its exact cosine
        np.testing.assert_allclose(scores[:1], X[approx[:1]] @ X[i], atol=2e-3)
    assert np.mean(overlap) >= 0.9, np.mean(overlap)
    # a brute-force check of the exact path itself
    i = 17
    brute = np.argsort(-(X @ X[i]))[1:11]
    assert set(snap.search(X[i], 10, exclude_key=bytes(keys[i]), exact=True)[0]) == set(brute)
    with store.locked():
        assert store.ann_update(min_rows=1000, tail_max=500) == "extended"
    assert store.snapshot().ann_rows == 6000


def _embed(samples, backbone="lite0", seed=0):
    rng = np.random.default_rng(seed)
    X = _unit(rng, len(samples), 1280, centres=3)
    for s, v in zip(samples, X):
        Embedding.objects.create(
            sample=s, project_id=s.project_id, backbone=backbone, vector=v.astype(np.float16).tobytes()
        )
    return X


def test_it_rebuilds_a_lost_store_from_the_database(team):
    project = team.project
    samples = [make_sample(project, seed=i) for i in range(12)]
    _embed(samples)
    assert services.feature_store_sync(project_id=project.pk, backbone="lite0") == 12
    assert services.feature_store_sync(project_id=project.pk, backbone="lite0") == 0  # watermark
    before = [(s.pk, round(x, 3)) for s, x in selectors.sample_similar(sample=samples[0], k=5, backbone="lite0")]
    assert len(before) == 5

    shutil.rmtree(selectors.feature_store(project_id=project.pk, backbone="lite0").root)  # the disk lost it
    assert selectors.sample_similar(sample=samples[0], backbone="lite0") is None
    assert services.feature_store_check(project_id=project.pk, backbone="lite0") == "rebuilt"
    after = [(s.pk, round(x, 3)) for s, x in selectors.sample_similar(sample=samples[0], k=5, backbone="lite0")]
    assert after == before
    assert services.feature_store_check(project_id=project.pk, backbone="lite0") == "current"


def test_it_leaves_deleted_samples_out_and_compacts_them_away(team):
    from labeling.services import sample_delete

    project = team.project
    samples = [make_sample(project, seed=i) for i in range(6)]
    _embed(samples)
    services.feature_store_sync(project_id=project.pk, backbone="lite0")
    sample_delete(sample=samples[1])
    similar = selectors.sample_similar(sample=samples[0], k=10, backbone="lite0")
    assert {s.pk for s, _ in similar} == {s.pk for s in samples[2:]}
    ids, matrix = selectors.embedding_matrix(project_id=project.pk, backbone="lite0")
    assert samples[1].pk not in ids and matrix.shape == (5, 1280)
    assert services.feature_store_rebuild(project_id=project.pk, backbone="lite0") == 5
    assert selectors.feature_snapshot(project_id=project.pk, backbone="lite0").n == 5


def test_it_keeps_held_out_predictions_in_their_own_table(team):
    a, b = make_sample(team.project, seed=1), make_sample(team.project, seed=2)
    model = make_model(team.project, mode="quick")
    services.models.held_out_store(
        model=model, predictions=[[str(a.pk), "ants", "bees", 0.7], [str(b.pk), "bees", "bees", 0.9]]
    )
    assert selectors.model_predictions(model=model) == [
        [str(a.pk), "ants", "bees", 0.7],
        [str(b.pk), "bees", "bees", 0.9],
    ]
    assert [s.pk for s in selectors.model_cell_samples(model=model, true="ants", predicted="bees")] == [a.pk]
    model.delete()
    assert not HeldOutPrediction.objects.exists()


def test_it_shows_near_duplicates_from_the_store(team):
    project = team.project
    a, b, c = (make_sample(project, seed=i) for i in range(3))
    v = _unit(np.random.default_rng(3), 2, 1280)
    for s, x in ((a, v[0]), (b, v[0] + 0.01 * v[1]), (c, v[1])):  # b: a re-encoded copy of a
        x = x / np.linalg.norm(x)
        Embedding.objects.create(
            sample=s, project_id=project.pk, backbone="lite0", vector=x.astype(np.float16).tobytes()
        )
    services.feature_store_sync(project_id=project.pk, backbone="lite0")
    assert [s.pk for s, _ in selectors.sample_near_duplicates(sample=a)] == [b.pk]
    assert selectors.sample_similar_context(a)["near_duplicates"][0][0].pk == b.pk


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_moves_old_json_predictions_into_the_table():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    old = [
        ("training", "0003_one_active_full_training"),
        ("projects", "0004_project_deleting"),
        ("labeling", "0004_sample_page_indexes"),
    ]
    executor.migrate(old)
    try:
        apps = executor.loader.project_state(old).apps
        User = apps.get_model("auth", "User")
        Project = apps.get_model("projects", "Project")
        ModelVersion = apps.get_model("training", "ModelVersion")
        project = Project.objects.create(name="old", created_by=User.objects.create(username="old"))
        sid = uuid.uuid4()
        ModelVersion.objects.create(
            project=project,
            version=1,
            mode="quick",
            features="lite0",
            artifact_name="x",
            predictions=[[str(sid), "ants", "bees", 0.6], ["not a uuid", "a", "b", 1]],
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    rows = list(HeldOutPrediction.objects.values_list("sample_id", "true", "predicted", "confidence"))
    assert rows == [(sid, ["ants"], ["bees"], 0.6)]


def test_it_re_ranks_a_large_project_in_the_background_at_claim_time(team, monkeypatch):
    from unittest import mock

    from labeling import queue
    from training import queue_order

    project = team.project
    samples = [make_sample(project, seed=i) for i in range(4)]
    _embed(samples)
    services.feature_store_sync(project_id=project.pk, backbone="lite0")
    monkeypatch.setattr(queue_order, "SYNC_MAX_ROWS", 2)  # "large": more vectors than that
    with (
        mock.patch("training.pipeline.queue_exhausted") as later,
        mock.patch.object(queue_order, "queue_refresh") as now,
    ):
        items = queue.queue_claim(project=project, holder="user:1", count=1)
    assert len(items) == 1 and later.called and not now.called
    monkeypatch.setattr(queue_order, "SYNC_MAX_ROWS", 50_000)
    with mock.patch.object(queue_order, "queue_refresh") as now:
        queue.queue_claim(project=project, holder="user:2", count=1)
    assert now.called  # small: ranked right there, as before


def test_it_catches_a_machines_store_up_with_vectors_embedded_elsewhere(team):
    project = team.project
    samples = [make_sample(project, seed=i) for i in range(3)]
    _embed(samples)  # rows in the database, no store on this machine yet
    assert selectors.feature_snapshot(project_id=project.pk, backbone="lite0") is None
    assert services.feature_stores_catch_up(project_id=project.pk, backbones=["lite0"]) == 3
    assert selectors.feature_snapshot(project_id=project.pk, backbone="lite0").n == 3
    assert services.feature_stores_catch_up(project_id=project.pk, backbones=["lite0"]) == 0
