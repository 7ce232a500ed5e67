"""Deploying another model version while clients invoke never fails a request or mixes versions.

A real server (pytest-django's live server, threaded) answers 8 client threads that invoke as fast as
they can, while the main thread deploys v1, v2, v1, ... through the API. v1 knows {ants, bees}; v2
also knows {wasps}, so an answer that mixed the two versions (one version's id with the other's
labels or probabilities) would show.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter

import pytest
import requests

from inference.tests.conftest import hym_files
from labeling.services import sample_labels_set
from labeling.tests.factories import make_sample
from projects import keys
from training import runner, services
from training.models import ModelVersion

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

CLIENTS = 8
SWAPS = 12


@pytest.fixture
def two_versions(deployed):  # noqa: F811
    """v1: ants/bees (the deployed fixture); v2: ants/bees/wasps (6 more images labeled 'wasps')."""
    project = deployed.project
    v1 = ModelVersion.objects.get(project=project, deployed=True)
    for path in hym_files("val", "bees", 6, offset=30):
        sample = make_sample(project, data=path.read_bytes())
        sample_labels_set(sample=sample, names=["wasps"], user=None)
    services.embeddings_compute(project_id=project.pk)
    assert runner.quick_retrain_run(project_id=project.pk) == "succeeded"
    v2 = ModelVersion.objects.filter(project=project).exclude(pk=v1.pk).latest("version")
    assert set(v1.label_names) == {"ants", "bees"} and set(v2.label_names) == {"ants", "bees", "wasps"}
    return project, v1, v2


def test_invokes_during_deploys_all_succeed_with_one_whole_version(two_versions, live_server, settings):
    settings.PICTOR_API_RATE = "1000000/min"
    project, v1, v2 = two_versions
    labels_of = {str(v1.pk): set(v1.label_names), str(v2.pk): set(v2.label_names)}
    invoke_key = keys.api_key_create(project=project, name="clients", scope="invoke")[1]
    admin_key = keys.api_key_create(project=project, name="ops", scope="full")[1]
    images = [base64.b64encode(p.read_bytes()).decode() for p in hym_files("val", "ants", 4)]
    url = f"{live_server.url}/api/v1/projects/{project.pk}/invoke"

    stop = threading.Event()
    problems: list[str] = []
    seen: Counter = Counter()
    lock = threading.Lock()

    def client(n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {invoke_key}"
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = session.post(url, json={"data": images[(n + i) % len(images)]}, timeout=60)
            except requests.RequestException as exc:
                with lock:
                    problems.append(f"client {n}: {exc!r}")
                continue
            problem = None
            if r.status_code != 200:
                problem = f"status {r.status_code}: {r.text[:300]}"
            else:
                body = r.json()
                model_id = body.get("model", {}).get("id")
                names = {x["label"] for x in body.get("labels", [])}
                if model_id not in labels_of:
                    problem = f"unknown model {model_id!r}"
                elif names != labels_of[model_id] or body["label"] not in names:
                    problem = f"labels {sorted(names)} with model v{body['model']['version']}"
                elif abs(sum(x["confidence"] for x in body["labels"]) - 1) > 1e-3:
                    problem = f"confidences sum to {sum(x['confidence'] for x in body['labels'])}"
            with lock:
                if problem:
                    problems.append(f"client {n}: {problem}")
                else:
                    seen[model_id] += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {admin_key}"
    deploys, stale = [], []
    try:
        time.sleep(1.0)
        for i in range(SWAPS):
            target = v2 if i % 2 == 0 else v1
            r = admin.post(f"{live_server.url}/api/v1/projects/{project.pk}/models/{target.pk}/deploy", timeout=60)
            deploys.append((r.status_code, r.json().get("id")))
            # Once the deploy has answered, every new request gets the new version.
            after = admin.post(url, json={"data": images[0]}, timeout=60)
            stale.append(None if after.json().get("model", {}).get("id") == str(target.pk) else (i, after.text[:200]))
            time.sleep(0.4)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)

    assert all(status == 200 for status, _ in deploys), deploys
    assert [model_id for _, model_id in deploys] == [str(v2.pk) if i % 2 == 0 else str(v1.pk) for i in range(SWAPS)]
    assert not problems, f"{len(problems)} failed invokes, e.g.: {problems[:10]}"
    assert not any(stale), [s for s in stale if s]
    total = sum(seen.values())
    print(f"\n{total} invokes during {SWAPS} deploys: {dict(seen)}")
    assert total >= 50, seen
    assert seen[str(v1.pk)] > 0 and seen[str(v2.pk)] > 0, seen
    assert ModelVersion.objects.filter(project=project, deployed=True).get().pk == (v2.pk if SWAPS % 2 else v1.pk)
