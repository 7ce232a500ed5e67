"""The active learner's batch (training/queue_order.py): refreshed at claim time, and while images are
still being embedded."""

import pytest

from conftest import datasets_dir
from labeling import queue as lq
from labeling.models import QueueBatch
from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from training import services

HYM = datasets_dir() / "hymenoptera_data"


@pytest.fixture
def half_embedded(team, settings):
    """15 ants uploaded and embedded, then 15 bees uploaded and not embedded yet (folder by folder)."""
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}")
    settings.PICTOR_BACKBONES = ["lite0"]
    team.project.queue_strategy = "active"
    team.project.save()
    truth = {}
    for cls in ("ants", "bees"):
        for p in sorted((HYM / "train" / cls).glob("*.jpg"))[:15]:
            truth[make_sample(team.project, data=p.read_bytes()).pk] = cls
        if cls == "ants":
            services.embeddings_compute(project_id=team.project.pk)
    return team, truth


def test_it_mixes_unembedded_images_into_a_batch_ranked_while_embedding(half_embedded):
    team, truth = half_embedded
    got = lq.queue_claim(project=team.project, holder=lq.holder_for_user(team.user("labeler")), count=10)
    batch = QueueBatch.objects.get(project=team.project)
    assert [str(i.sample.pk) for i in got] == batch.sample_ids
    # Half the unlabeled images have no vector: half the batch is drawn from them, unscored, in
    # content-hash order; the learner's picks (all ants: the only embedded ones) are the rest.
    ranked = [i for i in got if i.score is not None]
    unranked = [i for i in got if i.score is None]
    assert len(ranked) == 5 and {truth[i.sample.pk] for i in ranked} == {"ants"}
    assert len(unranked) == 5 and {truth[i.sample.pk] for i in unranked} == {"bees"}
    bees = sorted((pk for pk, c in truth.items() if c == "bees"), key=lambda pk: team.project.samples.get(pk=pk).sha256)
    assert [i.sample.pk for i in unranked] == bees[:5]
    # interleaved, so the first few of a batch hold both kinds
    assert [i.score is None for i in got] == [False, True] * 5


def test_it_ranks_the_whole_batch_once_every_image_has_a_vector(half_embedded):
    team, truth = half_embedded
    services.embeddings_compute(project_id=team.project.pk)
    got = lq.queue_claim(project=team.project, holder=lq.holder_for_user(team.user("labeler")), count=10)
    assert len(got) == 10 and all(i.score is not None for i in got)
    assert {truth[i.sample.pk] for i in got} == {"ants", "bees"}


def test_the_queue_order_is_refreshed_after_a_labeled_batch(half_embedded):
    """Whoever asks for the next batch after labeling one gets an order computed after those labels,
    at claim time, even though the background refresh never ran."""
    team, truth = half_embedded
    services.embeddings_compute(project_id=team.project.pk)
    holder = lq.holder_for_user(team.user("labeler"))
    # Inside the test transaction no on_commit callback runs: no background retrain or refresh.
    first = lq.queue_claim(project=team.project, holder=holder, count=10)
    batch = QueueBatch.objects.get(project=team.project)
    # the learner's pick (typicality, no labels yet), not the upload-order fallback
    assert [str(i.sample.pk) for i in first] == batch.sample_ids[:10] and batch.phase == "typicality"
    for item in first:
        sample_labels_set(sample=item.sample, names=[truth[item.sample.pk]], user=team.user("labeler"))
    second = lq.queue_claim(project=team.project, holder=holder, count=10)
    refreshed = QueueBatch.objects.get(project=team.project)
    last_label = max(s.labeled_at for s in (i.sample.__class__.objects.get(pk=i.sample.pk) for i in first))
    assert refreshed.created > last_label  # recomputed after the labels, synchronously
    assert [str(i.sample.pk) for i in second] == refreshed.sample_ids[:10]
    assert not {i.sample.pk for i in first} & {i.sample.pk for i in second}
