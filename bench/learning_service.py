"""bench/learning.py --service: the same curves through the product's services on a real database.

A standalone Django on a temporary SQLite (bench/common.py). Per order: a project; the pool is
ingested (``labeling.services.samples_ingest``), embedded by the worker's code
(``training.services.embeddings_compute``: lite0, lite2, pixels); then, batch after batch, a labeler
claims 10 (``labeling.queue.queue_claim``, which refreshes the active order at claim time), labels
them from the ground truth (``labeling.services.sample_labels_set``) and the quick model is
retrained (``training.runner.quick_retrain_run``, what the debounced task runs). At each budget the
latest quick model is scored on the test split. Random order here is the product's own "random"
queue strategy (a content-hash order: one order per set, so no spread).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import learning_data as ld
from common import OUT_DIR, django_setup

BUDGETS = (10, 20, 40, 80, 160)


def _bytes(item) -> bytes:
    return item if isinstance(item, bytes) else Path(item).read_bytes()


def _curve(ds, strategy: str, owner) -> list[float]:
    from labeling import queue, services as ls
    from projects.services import project_create
    from training import quick, runner, services as ts

    project = project_create(name=f"{ds.name} {strategy}", owner=owner)
    project.queue_strategy = strategy
    project.save()
    items = [ls.IngestItem(filename=f"{i}.png", data=_bytes(im)) for i, im in enumerate(ds.pool_images)]
    report = ls.samples_ingest(project=project, items=items, user=owner)
    truth = {r.sample.pk: ds.classes[int(ds.y_pool[i])] for i, r in enumerate(report.results) if r.ok}
    ts.embeddings_compute(project_id=project.pk)
    test = {f: ld.features(ds, f, "test") for f in ld.FEATURES}
    holder = queue.holder_for_user(owner)
    accs = []
    n = 0
    while n < max(BUDGETS):
        items = queue.queue_claim(project=project, holder=holder, count=10)
        if not items:
            break
        for item in items:
            ls.sample_labels_set(sample=item.sample, names=[truth[item.sample.pk]], user=owner)
        n += len(items)
        runner.quick_retrain_run(project_id=project.pk)
        if n in BUDGETS:
            model = quick.latest_quick_model(project)
            if model is None:
                accs.append(float("nan"))
                continue
            parts = model.features.split("+")
            from training.ml import heads

            X = test[parts[0]] if len(parts) == 1 else heads.concat_features([test[p] for p in parts])
            pred = quick.head_load(model).predict_proba(X).argmax(1)
            names = np.array(model.label_names)[pred]
            accs.append(float((names == np.array(ds.classes)[ds.y_test]).mean()))
    return accs


def main(*, sets: list[str], seeds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pictor-learning-"))
    django_setup(tmp, PICTOR_BACKBONES="lite0,lite2,pixels", PICTOR_QUICK_DEBOUNCE="0")
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user(username="bench", password="x")
    lines = [
        "# Learning curves through the services (--service)",
        "",
        "| set | order | " + " | ".join(map(str, BUDGETS)) + " |",
        "|---|---|" + "---|" * len(BUDGETS),
    ]
    for name in sets:
        ds = ld.LOADERS[name]()
        for strategy in ("active", "random"):
            t0 = time.perf_counter()
            accs = _curve(ds, strategy, owner)
            print(f"  {name} {strategy}: {accs} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
            lines.append(f"| {ds.name} | {strategy} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    text = "\n".join(lines) + "\n"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "learning-service.md").write_text(text)
    print(text)
