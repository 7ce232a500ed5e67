"""Ten labelers label one project at the same time through real HTTP: nothing lost, nothing twice.

Each labeler is a browser-like requests.Session signed in through the login form (with CSRF), and
loops GET /api/v1/projects/<id>/samples/next?count=1 → PUT .../samples/<sid>/labels until the queue
has nothing left for them. The team queue leases every sample it hands out, so:

* zero lost: every sample ends labeled, with exactly one LabelEvent;
* zero duplicated: no sample is handed to two labelers (nor twice to one);
* zero 5xx (in fact: every request answers 200).

LABELS_PER_LABELER is 20 in CI; PICTOR_STRESS_LABELS=200 gives the 10 x 200 run of the fault sweep.
Labeling queues a debounced quick retrain through Celery; nobody consumes it here, which is fine.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from labeling import queue
from labeling.models import LabelEvent, Lease, Sample
from labeling.services import label_create
from labeling.tests.factories import jpeg_bytes, make_sample
from projects.roles import Role
from projects.tests.factories import PASSWORD, MembershipFactory, ProjectFactory, UserFactory

LABELERS = 10
LABELS_PER_LABELER = int(os.environ.get("PICTOR_STRESS_LABELS") or 20)
LABEL_NAMES = ("ants", "bees")
TIMEOUT = 60  # seconds, per HTTP request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


def sign_in(base: str, username: str) -> requests.Session:
    """Sign in the way a browser does: GET the form for the CSRF cookie, POST it back."""
    s = requests.Session()
    login = f"{base}/accounts/login/"
    r = s.get(login, timeout=TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    token = s.cookies.get("csrftoken")
    assert token, "the login page set no csrftoken cookie"
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text)
    r = s.post(
        login,
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": form_token.group(1) if form_token else token,
        },
        headers={"Referer": login},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert r.status_code == 302, f"sign-in of {username} failed: {r.status_code} {r.text[:300]}"
    assert "sessionid" in s.cookies
    return s


def _engine() -> str:
    from django.db import connection

    return connection.vendor


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_ten_labelers_label_every_sample_exactly_once(engine, request, tmp_path):
    """Runs on both databases: the other engine's run is a pytest of its own (one database per run)."""
    if engine == _engine():
        if engine == "sqlite":
            from django.db import connection

            with connection.cursor() as cur:  # the embedded default's settings, under concurrent writers
                assert cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert cur.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        _ten_labelers(request.getfixturevalue("live_server"), request.getfixturevalue("media"))
        return
    if engine == "postgresql":
        pytest.skip("needs PostgreSQL: this run uses SQLite")
    import subprocess
    import sys

    from tests.procs import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTEST_CURRENT_TEST")}
    # A database file, not SQLite's in-memory test database: the live server's threads then write
    # through connections of their own, as gunicorn's workers do.
    env["PICTOR_TEST_DB_NAME"] = str(tmp_path / "test.sqlite3")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_ten_labelers_label_every_sample_exactly_once[sqlite]",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-6000:] + result.stderr[-3000:]


def _ten_labelers(live_server, media) -> None:
    project = ProjectFactory(name="Concurrent labeling")
    for name in LABEL_NAMES:
        label_create(project=project, name=name)
    users = [
        MembershipFactory(project=project, role=Role.LABELER, user=UserFactory(username=f"labeler{i:02d}")).user
        for i in range(LABELERS)
    ]
    total = LABELERS * LABELS_PER_LABELER
    for seed in range(total):
        make_sample(project, seed=10_000 + seed, data=jpeg_bytes(10_000 + seed, size=(24, 24)))
    assert Sample.objects.filter(project=project, labeled_at__isnull=True).count() == total

    base = live_server.url
    api = f"{base}/api/v1/projects/{project.pk}"
    sessions = {u.username: sign_in(base, u.username) for u in users}

    handed: list[tuple[str, str]] = []  # (labeler, sample id) for every sample the queue handed out
    handed_at: dict = {}  # (labeler, sample id) -> when the answer arrived
    statuses: collections.Counter = collections.Counter()
    errors: list[str] = []
    empty_answers: list[tuple[str, int, int]] = []  # (labeler, labels done, unlabeled samples left)
    lock = threading.Lock()
    start = threading.Barrier(LABELERS)

    def labeler(username: str) -> int:
        s = sessions[username]
        headers = {"X-CSRFToken": s.cookies["csrftoken"], "Referer": f"{base}/"}
        done = 0
        start.wait()
        for _ in range(total + 5):  # a safety cap: the loop ends when the queue has nothing left
            r = s.get(f"{api}/samples/next", params={"count": 1}, timeout=TIMEOUT)
            with lock:
                statuses[("GET next", r.status_code)] += 1
            if r.status_code != 200:
                with lock:
                    errors.append(f"{username} GET next: {r.status_code} {r.text[:200]}")
                return done
            results = r.json()["results"]
            if not results:
                # How much was left when the queue said "nothing for you"? (Counted after: only less.)
                left = s.get(f"{api}/samples", params={"labeled": "false"}, timeout=TIMEOUT).json()["count"]
                with lock:
                    empty_answers.append((username, done, left))
                return done
            sid = results[0]["id"]
            with lock:
                handed.append((username, sid))
                handed_at[(username, sid)] = timezone.now()
            label = LABEL_NAMES[hash(sid) % len(LABEL_NAMES)]
            r = s.put(f"{api}/samples/{sid}/labels", json={"labels": [label]}, headers=headers, timeout=TIMEOUT)
            with lock:
                statuses[("PUT labels", r.status_code)] += 1
            if r.status_code != 200:
                with lock:
                    errors.append(f"{username} PUT {sid}: {r.status_code} {r.text[:200]}")
                return done
            assert r.json()["labels"] == [label]
            done += 1
        with lock:
            errors.append(f"{username} never saw an empty queue")
        return done

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=LABELERS) as pool:
        per_labeler = dict(zip(sessions, pool.map(labeler, sessions)))
    elapsed = time.monotonic() - t0
    print(
        f"\n{total} labels by {LABELERS} labelers over HTTP in {elapsed:.1f}s; per labeler {per_labeler}; {dict(statuses)}"
    )
    premature = [(u, d, left) for u, d, left in empty_answers if left > LABELERS - 1]
    if premature:
        # More unlabeled samples than the others could hold leases on: the queue gave up too early
        # (see test_a_lost_lease_race_does_not_end_the_queue). Reported, not failed, as it is timing-bound.
        print(f"told the queue was empty while work remained (labeler, done, unlabeled left): {premature}")

    # Zero 5xx, and in fact no error at all.
    assert not [k for k in statuses if k[1] >= 500], dict(statuses)
    assert not errors, errors[:10]

    # Zero duplicated: no sample was handed out twice, to two labelers or to the same one.
    counts = collections.Counter(sid for _, sid in handed)
    twice = {sid: [u for u, s in handed if s == sid] for sid, n in counts.items() if n > 1}
    events = LabelEvent.objects.filter(sample__project=project)
    first_labeled = {}
    for sample_id, created in events.order_by("created").values_list("sample_id", "created"):
        first_labeled.setdefault(str(sample_id), created)
    # The one known way (test_a_sample_labeled_meanwhile_is_not_handed_out): the later hand-out came
    # after the sample had been labeled. Anything else is a new bug and fails here.
    unexplained = {
        sid: users
        for sid, users in twice.items()
        if not all(first_labeled[sid] <= handed_at[(u, sid)] for u in users[1:])
    }
    assert not unexplained, f"handed out to two labelers while still unlabeled: {unexplained}"

    # Zero lost: every sample handed out and labeled, with exactly one event (a known duplicate hands
    # out a labeled sample; relabeling it with the same label records nothing).
    ids = {str(pk) for pk in Sample.objects.filter(project=project).values_list("pk", flat=True)}
    assert set(counts) == ids, f"{len(ids - set(counts))} samples never handed out"
    assert sum(per_labeler.values()) == total + sum(n - 1 for n in counts.values())
    assert Sample.objects.filter(project=project, labeled_at__isnull=True).count() == 0
    assert events.count() == total
    per_sample = collections.Counter(events.values_list("sample_id", flat=True))
    assert set(per_sample.values()) == {1}
    # Each sample carries the one label chosen for it, and its event names the labeler it went to first.
    first_holder = {}
    for u, sid in handed:
        first_holder.setdefault(sid, u)
    for sample in Sample.objects.filter(project=project).prefetch_related("labels"):
        assert [x.name for x in sample.labels.all()] == [LABEL_NAMES[hash(str(sample.pk)) % len(LABEL_NAMES)]]
    for sample_id, username in events.values_list("sample_id", "user__username"):
        assert first_holder[str(sample_id)] == username
    # Nothing unlabeled is still leased.
    assert not Lease.objects.filter(project=project, sample__labeled_at__isnull=True).exists()

    assert not twice, f"{len(twice)} labeled sample(s) handed out again: {twice}"


@pytest.mark.django_db
def test_a_lost_lease_race_does_not_end_the_queue(monkeypatch, media):
    """The HTTP race, made deterministic: teammates win every candidate of our first read."""
    project = ProjectFactory(name="Lease race")
    for seed in range(20):
        make_sample(project, seed=20_000 + seed, data=jpeg_bytes(20_000 + seed, size=(24, 24)))
    real = queue._candidates

    def teammates_win(project, holder, now, want, tried, **kwargs):
        out = real(project, holder, now, want, tried, **kwargs)
        for sample, _ in out:  # taken by teammates between our read and our lease attempts
            Lease.objects.create(
                sample=sample,
                project_id=project.pk,
                holder="user:teammate",
                expires=timezone.now() + timedelta(minutes=10),
                created=now,
            )
        monkeypatch.setattr(queue, "_candidates", real)  # only this first read loses the race
        return out

    monkeypatch.setattr(queue, "_candidates", teammates_win)
    items = queue.queue_claim(project=project, holder="user:me", count=1)
    free = Sample.objects.filter(project=project, lease__isnull=True).count()
    assert free > 0
    assert len(items) == 1, f"queue_claim answered {items} while {free} samples were free"


@pytest.mark.django_db
def test_a_sample_labeled_meanwhile_is_not_handed_out(monkeypatch, media):
    """The HTTP duplicate, made deterministic: a teammate claims and labels our first candidate."""
    from labeling.services import sample_labels_set

    project = ProjectFactory(name="Stale candidate")
    label_create(project=project, name="ants")
    for seed in range(20):
        make_sample(project, seed=30_000 + seed, data=jpeg_bytes(30_000 + seed, size=(24, 24)))
    real = queue._candidates

    def teammate_labels_it_first(project, holder, now, want, tried, **kwargs):
        out = real(project, holder, now, want, tried, **kwargs)
        monkeypatch.setattr(queue, "_candidates", real)
        (theirs,) = queue.queue_claim(project=project, holder="user:teammate", count=1)
        assert theirs.sample.pk == out[0][0].pk  # the same queue order: they took our first candidate
        sample_labels_set(sample=theirs.sample, names=["ants"], user=None)  # and labeled it
        return out

    monkeypatch.setattr(queue, "_candidates", teammate_labels_it_first)
    (mine,) = queue.queue_claim(project=project, holder="user:me", count=1)
    assert Sample.objects.get(pk=mine.sample.pk).labeled_at is None, "handed out a sample a teammate already labeled"
