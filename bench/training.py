"""Fine-tuning against the quick model on hymenoptera, through the product's own training path.

    .venv/bin/python bench/training.py [--quick]

Django with DEBUG=true, a temporary PICTOR_DATA_DIR and SQLite (no services). The train folder is
ingested with its labels and embedded; the quick model is trained (timed); then one full training
job runs in-process exactly as the worker runs it (training.runner). Reported, all from this run:
the full model's accuracy on its held-out test split and the quick recipe's on the same split
(the baseline), and both models on the 153 val images that were never uploaded. Quick-retrain
seconds at 1k/10k/100k labeled vectors are in bench/quick_model.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import HYMENOPTERA as HYM
from common import OUT_DIR as OUT
from common import django_setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 epoch at 160 px, lite0 features only")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="pictor-bench-training-"))
    quick_env = {"PICTOR_BACKBONES": "lite0", "PICTOR_FINETUNE_EPOCHS": "1", "PICTOR_FINETUNE_RESOLUTION": "160"}
    django_setup(data_dir, PICTOR_LOG_LEVEL="WARNING", **(quick_env if args.quick else {}))
    import numpy as np
    import onnxruntime as ort
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage

    from labeling import services as ls
    from projects.services import project_create
    from training import quick, runner, services
    from training.embedders import embedder_get
    from training.ml import backbone as bb
    from training.ml import heads
    from training.models import ModelVersion, TrainingJob

    user = get_user_model().objects.create_user("bench", password="x")
    project = project_create(name="training bench", owner=user)
    items = [
        ls.IngestItem(filename=p.name, data=p.read_bytes(), labels=[cls])
        for cls in ("ants", "bees")
        for p in sorted((HYM / "train" / cls).iterdir())
    ]
    ls.samples_ingest(project=project, items=items, user=user)
    t = time.perf_counter()
    services.embeddings_compute(project_id=project.pk)
    t_embed = time.perf_counter() - t
    t = time.perf_counter()
    runner.quick_retrain_run(project_id=project.pk)
    t_quick = time.perf_counter() - t
    qm = ModelVersion.objects.get(project=project, mode="quick")

    job = TrainingJob.objects.create(project=project, mode="full")
    t = time.perf_counter()
    status = runner.training_job_run(job_id=job.pk)
    t_full = time.perf_counter() - t
    job.refresh_from_db()
    if status != "succeeded":
        print(f"full training {status}: {job.error}")
        sys.exit(1)
    fm = job.model
    m = fm.metrics

    val = [(p.read_bytes(), cls) for cls in ("ants", "bees") for p in sorted((HYM / "val" / cls).iterdir())]
    res = int(fm.features.split("@")[1])
    with default_storage.open(fm.artifact_name, "rb") as f:
        session = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    full_probs = np.concatenate(
        [
            session.run(["probabilities"], {"input": bb.preprocess([d for d, _ in val[i : i + 16]], res)})[0]
            for i in range(0, len(val), 16)
        ]
    )
    full_val = float((full_probs.argmax(1) == np.array([fm.label_names.index(c) for _, c in val])).mean())
    parts = qm.features.split("+")
    feats = [embedder_get(b).embed([d for d, _ in val], batch_size=16) for b in parts]
    X = heads.concat_features(feats) if len(parts) > 1 else feats[0]
    quick_probs = quick.head_load(qm).predict_proba(X)
    quick_val = float((quick_probs.argmax(1) == np.array([qm.label_names.index(c) for _, c in val])).mean())
    base = m["baseline_quick"] or {}
    split = m["split"]
    table = f"""| | quick model (linear head on {qm.features}) | full fine-tune ({fm.features}) | ratio full/quick |
|---|---|---|---|
| held-out test split ({split["test"]} images, same split) | {base.get("accuracy", float("nan")):.3f} | {m["accuracy"]:.3f} | {m["accuracy"] / base["accuracy"] if base.get("accuracy") else float("nan"):.3f} |
| hymenoptera val ({len(val)} images, never uploaded) | {quick_val:.3f} | {full_val:.3f} | {full_val / quick_val:.3f} |
| training wall time | {t_quick:.1f} s (+ {t_embed:.0f} s features at upload) | {t_full:.0f} s ({m["stop_reason"]}, {len(m.get("history") or [])} epochs) | {t_full / max(t_quick, 1e-9):.0f}× |

Split of the full training: {split["train"]} train / {split["validation"]} validation (early stopping) / {split["test"]} test.
Offered as better than the quick model: **{m["better_than_quick"]}**. Settings: epochs {settings.PICTOR_FINETUNE_EPOCHS},
time cap {settings.PICTOR_FINETUNE_SECONDS:.0f} s, resolution {res}, backbones {",".join(settings.PICTOR_BACKBONES)}.
"""
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "training.md").write_text(table)


if __name__ == "__main__":
    main()
