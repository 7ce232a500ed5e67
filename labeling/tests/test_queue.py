import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from labeling import queue, services
from labeling.models import LabelEvent, Lease, QueueBatch, Sample
from labeling.tests.factories import make_sample


def holder(n):
    return f"user:{n}"


def test_a_leased_sample_is_not_handed_to_anyone_else(team):
    samples = [make_sample(team.project, seed=i) for i in range(3)]
    a = queue.queue_claim(project=team.project, holder=holder(1), count=1)
    b = queue.queue_claim(project=team.project, holder=holder(2), count=1)
    assert a[0].sample.pk != b[0].sample.pk
    # Asking again returns the same leased item (a reload does not burn through the queue).
    assert queue.queue_claim(project=team.project, holder=holder(1), count=1)[0].sample.pk == a[0].sample.pk
    assert {s.pk for s in samples} >= {a[0].sample.pk, b[0].sample.pk}


def test_an_expired_lease_is_released_and_a_labeled_sample_leaves_the_queue(team):
    make_sample(team.project, seed=1)
    (mine,) = queue.queue_claim(project=team.project, holder=holder(1), count=1)
    assert queue.queue_claim(project=team.project, holder=holder(2), count=1) == []
    Lease.objects.update(expires=timezone.now() - timedelta(seconds=1))
    (theirs,) = queue.queue_claim(project=team.project, holder=holder(2), count=1)
    assert theirs.sample.pk == mine.sample.pk
    services.sample_labels_set(sample=theirs.sample, names=["ants"], user=team.user("labeler"))
    assert not Lease.objects.exists()
    assert queue.queue_claim(project=team.project, holder=holder(3), count=1) == []


def test_skip_releases_for_others_but_not_for_the_skipper(team):
    make_sample(team.project, seed=1)
    (item,) = queue.queue_claim(project=team.project, holder=holder(1), count=1)
    queue.queue_skip(sample=item.sample, holder=holder(1))
    assert queue.queue_claim(project=team.project, holder=holder(1), count=1) == []
    assert queue.queue_claim(project=team.project, holder=holder(2), count=1)[0].sample.pk == item.sample.pk


def test_active_strategy_follows_the_learners_batch_then_falls_back(team, django_capture_on_commit_callbacks):
    samples = [make_sample(team.project, seed=i) for i in range(4)]
    QueueBatch.objects.create(
        project=team.project, sample_ids=[str(samples[2].pk), str(samples[0].pk)], scores=[0.9, 0.5]
    )
    got = queue.queue_claim(project=team.project, holder=holder(1), count=3)
    assert [i.sample.pk for i in got[:2]] == [samples[2].pk, samples[0].pk]
    assert got[0].score == 0.9 and got[2].score is None


def test_it_hands_out_a_random_not_the_upload_order_before_the_learner_has_any_vector(team):
    # uploaded one class folder after the other: in upload order the first batch would be one class
    samples = [make_sample(team.project, seed=i) for i in range(12)]
    assert team.project.queue_strategy == "active" and not QueueBatch.objects.filter(project=team.project).exists()
    got = queue.queue_claim(project=team.project, holder=holder(1), count=6)
    assert [i.sample.pk for i in got] == [s.pk for s in sorted(samples, key=lambda s: s.sha256)[:6]]
    assert [i.sample.pk for i in got] != [s.pk for s in samples[:6]]


def test_random_and_oldest_orders(team):
    samples = [make_sample(team.project, seed=i) for i in range(5)]
    team.project.queue_strategy = "oldest"
    team.project.save()
    got = queue.queue_claim(project=team.project, holder=holder(1), count=5)
    assert [i.sample.pk for i in got] == [s.pk for s in sorted(samples, key=lambda s: (s.created, s.pk))]
    Lease.objects.all().delete()
    team.project.queue_strategy = "random"
    team.project.save()
    got = queue.queue_claim(project=team.project, holder=holder(1), count=5)
    assert [i.sample.pk for i in got] == [s.pk for s in sorted(samples, key=lambda s: s.sha256)]


def test_undo_restores_the_previous_labels(team):
    sample = make_sample(team.project, seed=1)
    user = team.user("labeler")
    services.sample_labels_set(sample=sample, names=["ants"], user=user)
    services.sample_labels_set(sample=sample, names=["bees"], user=user)
    assert services.label_undo(project=team.project, user=user).pk == sample.pk
    assert [l.name for l in Sample.objects.get(pk=sample.pk).labels.all()] == ["ants"]
    services.label_undo(project=team.project, user=user)
    assert Sample.objects.get(pk=sample.pk).labeled_at is None
    assert services.label_undo(project=team.project, user=user) is None


def test_undo_does_not_clobber_a_teammates_later_change(team):
    sample = make_sample(team.project, seed=1)
    services.sample_labels_set(sample=sample, names=["ants"], user=team.user("labeler"))
    services.sample_labels_set(sample=sample, names=["bees"], user=team.user("admin"))
    assert services.label_undo(project=team.project, user=team.user("labeler")) is None
    assert [l.name for l in Sample.objects.get(pk=sample.pk).labels.all()] == ["bees"]


def test_rename_merge_and_delete_keep_labels_consistent(team):
    user = team.user("admin")
    a = make_sample(team.project, seed=1, labels=["ant"])
    b = make_sample(team.project, seed=2, labels=["ants"])
    c = make_sample(team.project, seed=3, labels=["bee"])
    from labeling.models import Label

    ant, ants, bee = (Label.objects.get(project=team.project, name=n) for n in ("ant", "ants", "bee"))
    assert services.label_merge(source=ant, target=ants, user=user) == 1
    assert {s.pk for s in ants.samples.all()} == {a.pk, b.pk}
    services.label_update(label=bee, name="bees", color="#123456", shortcut="9")
    assert [l.name for l in Sample.objects.get(pk=c.pk).labels.all()] == ["bees"]
    with pytest.raises(ValidationError):
        services.label_update(label=bee, name="ants", color="#123456", shortcut="")
    assert services.label_delete(label=ants, user=user) == 2
    assert Sample.objects.get(pk=a.pk).labeled_at is None
    assert LabelEvent.objects.filter(sample=a, via="label-delete").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_labelers_never_share_a_leased_item_and_lose_no_label(team):
    """N threads, each its own DB connection, claim and label until the queue is empty."""
    samples = [make_sample(team.project, seed=i) for i in range(30)]
    users = [team.user(r) for r in ("owner", "admin", "labeler")]
    handed: list = []
    lock = threading.Lock()
    errors: list = []

    def work(user):
        try:
            while True:
                items = queue.queue_claim(project=team.project, holder=f"user:{user.pk}", count=1)
                if not items:
                    return
                with lock:
                    handed.append(items[0].sample.pk)
                services.sample_labels_set(sample=items[0].sample, names=["ants"], user=user)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(handed, key=str) == sorted((s.pk for s in samples), key=str)  # each exactly once
    assert Sample.objects.filter(project=team.project, labeled_at__isnull=True).count() == 0
    assert LabelEvent.objects.filter(sample__project=team.project).count() == 30
