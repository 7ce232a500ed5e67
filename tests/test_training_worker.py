"""The full fine-tune job through a REAL Celery worker: end to end, cancelled, and its worker killed.

POST /trainings {"mode": "full"} → on_commit → Redis → `celery worker -Q training` (a separate
process) → fine-tune → ONNX artifact + model version. The worker must see what this test wrote, so
the tests run in transaction mode (rows are committed), the worker's DATABASE_URL points at
pytest-django's test database, and both processes keep media under the same PICTOR_DATA_DIR.
Training is made tiny through the worker's environment (128 px, one step per epoch).

The last test runs in process: a cancel that arrives after the fine-tune loop's last step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rest_framework.test import APIClient

from conftest import datasets_dir
from tests.procs import BIN, celery_beat, celery_worker, clean_env, start, stop, worker_database_url, worker_redis_url

HYM = datasets_dir() / "hymenoptera_data"
PER_CLASS = 12
RESOLUTION = 128
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# ----------------------------------------------------------------------------- environment


def _dataset_files(split: str = "train") -> dict[str, list[Path]]:
    if not HYM.is_dir():
        pytest.skip(f"hymenoptera_data not found at {HYM}; set PICTOR_DATASETS to the datasets folder")
    return {cls: sorted((HYM / split / cls).glob("*.jpg")) for cls in ("ants", "bees")}


class Rig:
    """One project with labeled, embedded ants and bees; starts workers that share its database and media."""

    def __init__(self, team, tmp_path: Path, settings):
        from labeling.tests.factories import make_sample
        from training.services import embeddings_compute

        import redis

        self.redis_url = worker_redis_url()
        # Messages other tests' SIGKILLed workers never acknowledged would be redelivered to ours.
        redis.Redis.from_url(self.redis_url).delete("unacked", "unacked_index", "unacked_mutex")
        self.database_url = worker_database_url()
        files = _dataset_files()
        self.team = team
        self.project = team.project
        self.tmp = tmp_path
        # One data folder for both processes: the worker derives MEDIA_ROOT = PICTOR_DATA_DIR/media.
        self.data_dir = tmp_path / "data"
        self.media = self.data_dir / "media"
        self.media.mkdir(parents=True)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(self.media)},
            },
        }
        # The quick baseline inside the full job reads the vectors of these backbones (worker: the env).
        settings.PICTOR_BACKBONES = ["lite0"]
        seed = 0
        for cls, paths in files.items():
            for path in paths[:PER_CLASS]:
                make_sample(self.project, seed=seed, labels=[cls], data=path.read_bytes())
                seed += 1
        assert embeddings_compute(project_id=self.project.pk) == 2 * PER_CLASS
        self.api = APIClient()
        self.api.force_authenticate(team.user("admin"))
        self.base = f"/api/v1/projects/{self.project.pk}/trainings"
        self.workers: list[tuple[subprocess.Popen, Path]] = []

    def start_worker(self, name: str, **env: str) -> tuple[subprocess.Popen, Path]:
        environment = clean_env(
            **{
                "PICTOR_DATA_DIR": str(self.data_dir),
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "SECRET_KEY": "w" * 40,
                "PICTOR_BACKBONES": "lite0",
                "PICTOR_FINETUNE_BACKBONE": "lite0",
                "PICTOR_FINETUNE_RESOLUTION": str(RESOLUTION),
                "PICTOR_FINETUNE_SECONDS": "60",
                "PICTOR_FINETUNE_EPOCHS": "1",
                # Two CPU threads for torch is all this machine has; don't oversubscribe it.
                "OMP_NUM_THREADS": "2",
                **env,
            }
        )
        log = self.tmp / f"{name}.log"
        proc = start(
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "-Q",
                "training",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "-n",
                f"{name}@%h",
            ],
            env=environment,
            log=log,
        )
        self.workers.append((proc, log))
        # Wait until it consumes: its start-up declares the queue binding in Redis, which the
        # per-test cache.clear() (a FLUSHDB of the shared broker database) removed.
        deadline = time.monotonic() + 60
        while " ready." not in (log.read_text() if log.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {name} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        return proc, log

    def stop_all(self) -> None:
        # Cold shutdown (SIGQUIT): a warm one would wait for a still-running fine-tune.
        for proc, _ in self.workers:
            stop(proc, signal.SIGQUIT, timeout=20)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.workers if log.exists())

    def post_full(self) -> str:
        r = self.api.post(self.base, {"mode": "full"}, format="json")
        assert r.status_code == 202, r.content
        assert r.json()["status"] == "queued"
        return r.json()["id"]

    def get(self, job_id: str) -> dict:
        r = self.api.get(f"{self.base}/{job_id}")
        assert r.status_code == 200, r.content
        return r.json()

    def poll(self, job_id: str, until, *, timeout: float, seen: list | None = None, each=None) -> dict:
        """Poll the job over the API until until(job) holds; fail (with the worker logs) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if each is not None:
                each()
            job = self.get(job_id)
            if seen is not None:
                seen.append((job["status"], job["progress"], job["message"]))
            if until(job):
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job state not reached within {timeout:.0f} s: {job}\n{self.logs()}")
            for proc, log in self.workers:
                if proc.poll() is not None and proc.returncode not in (-signal.SIGKILL,):
                    pytest.fail(f"worker exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            time.sleep(0.15)


@pytest.fixture
def rig(team, tmp_path, settings):
    r = Rig(team, tmp_path, settings)
    yield r
    r.stop_all()


def _final(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def _training(job: dict) -> bool:
    """Running, inside the fine-tune loop (it reports "epoch i/n")."""
    return _final(job) or (job["status"] == "running" and job["message"].startswith("epoch"))


# ----------------------------------------------------------------------------- tests


def test_full_training_runs_end_to_end_in_a_real_worker(rig):
    import onnxruntime as ort
    from django.core.files.storage import default_storage

    from training import services
    from training.ml import backbone as bb
    from training.models import ModelVersion, TrainingJob

    stale = 12
    rig.start_worker("trainer", PICTOR_JOB_STALE_SECONDS=str(stale))
    started = time.monotonic()
    job_id = rig.post_full()
    seen: list = []
    # The sweeper runs all along with the worker's own stale limit: the heartbeat stays fresh
    # through the phases that report no progress (reading, model load, linear probe, export).
    job = rig.poll(
        job_id, _final, timeout=180, seen=seen, each=lambda: services.training_jobs_sweep(stale_seconds=stale)
    )
    elapsed = time.monotonic() - started

    assert job["status"] == "succeeded", f"{job}\n{rig.logs()}"
    assert job["progress"] == 1
    assert job["error"] is None
    assert job["model"] is not None
    # Progress was reported while it ran, and the epoch history was stored.
    assert any(s == "running" and 0 < p < 1 for s, p, _ in seen), seen
    row = TrainingJob.objects.get(pk=job_id)
    assert row.attempts == 1 and row.started and row.heartbeat and row.finished
    assert row.history and row.history[-1]["epoch"] == 1 and row.history[-1]["val_accuracy"] is not None

    model = ModelVersion.objects.get(pk=job["model"]["id"])
    assert model.mode == ModelVersion.Mode.FULL and model.project_id == rig.project.pk
    recipe = model.metrics["recipe"]
    # What the graph holds: the fine-tuned lite0, or the probe alone at the graph's input.
    alone = f"{recipe['probe']['features']}@{recipe['input_resolution']}"
    assert model.features == (alone if recipe["finetune_weight"] == 0 else f"lite0@{RESOLUTION}")
    assert model.label_names == ["ants", "bees"]
    assert not model.deployed  # a full model is deployed by hand, never automatically
    m = model.metrics
    for key in ("accuracy", "macro_f1", "per_label", "confusion_matrix", "baseline_quick", "better_than_quick"):
        assert key in m, key
    assert 0 <= m["accuracy"] <= 1 and set(m["per_label"]) == {"ants", "bees"}
    assert m["confusion_matrix"]["labels"] == ["ants", "bees"]
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == m["split"]["test"]
    assert sum(m["split"].values()) == 2 * PER_CLASS
    # The worker had vectors for PICTOR_BACKBONES=lite0, so the like-for-like baseline was computed.
    assert m["baseline_quick"] is not None and m["baseline_quick"]["features"] == "lite0"
    assert isinstance(m["better_than_quick"], bool)
    assert model.held_out.count() == m["split"]["test"]

    # The artifact is in the shared storage and serves probabilities through onnxruntime.
    assert model.artifact_name.endswith(".onnx") and default_storage.exists(model.artifact_name)
    with default_storage.open(model.artifact_name, "rb") as f:
        session = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    image = _dataset_files("val")["bees"][0].read_bytes()  # never uploaded
    # its input: the largest resolution a part needs (a probe's 224 beside a fine-tune's 128)
    size = session.get_inputs()[0].shape[-1]
    assert size == recipe["input_resolution"]
    (probs,) = session.run(["probabilities"], {"input": bb.preprocess([image], size)})
    assert probs.shape == (1, 2) and np.all(probs >= 0)
    assert abs(float(probs.sum()) - 1) < 1e-4

    r = rig.api.get(f"/api/v1/projects/{rig.project.pk}/models/{model.pk}")
    assert r.status_code == 200 and r.json()["mode"] == "full"
    print(f"full job succeeded in {elapsed:.1f} s (train {m['train_seconds']} s)")


def test_cancelling_a_running_full_training(rig):
    from training.models import ModelVersion, TrainingJob

    rig.start_worker("trainer", PICTOR_FINETUNE_EPOCHS="60", PICTOR_FINETUNE_SECONDS="120")
    job_id = rig.post_full()
    # Cancel as soon as a worker claimed it: the fine-tune polls for the cancel at every step.
    job = rig.poll(job_id, lambda j: _final(j) or j["status"] == "running", timeout=120)
    assert job["status"] == "running", job

    r = rig.api.post(f"{rig.base}/{job_id}/cancel")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "running"  # a running job stops at its next step, not now

    cancel_sent = time.monotonic()
    job = rig.poll(job_id, _final, timeout=30)
    assert job["status"] == "cancelled", f"{job}\n{rig.logs()}"
    assert time.monotonic() - cancel_sent < 30
    assert job["model"] is None and job["error"] == "Cancelled by a user."
    row = TrainingJob.objects.get(pk=job_id)
    assert row.cancel_requested and row.finished and row.model_id is None
    assert not ModelVersion.objects.filter(project=rig.project, mode=ModelVersion.Mode.FULL).exists()
    # It stopped mid-run: far fewer epochs than planned were validated.
    assert len(row.history) < 60

    # A cancelled job cannot be cancelled again.
    r = rig.api.post(f"{rig.base}/{job_id}/cancel")
    assert r.status_code == 409


def test_killed_worker_fails_the_job_and_a_redelivery_does_nothing(rig):
    import redis

    from training import runner, services
    from training.models import ModelVersion, TrainingJob

    # Something is deployed before the full training starts.
    assert runner.quick_retrain_run(project_id=rig.project.pk) == "succeeded"
    deployed = ModelVersion.objects.get(project=rig.project, deployed=True)
    assert deployed.mode == ModelVersion.Mode.QUICK

    worker, log = rig.start_worker("doomed", PICTOR_FINETUNE_EPOCHS="60", PICTOR_FINETUNE_SECONDS="120")
    job_id = rig.post_full()
    job = rig.poll(job_id, _training, timeout=120)
    assert job["status"] == "running", job
    assert TrainingJob.objects.get(pk=job_id).heartbeat is not None

    os.killpg(worker.pid, signal.SIGKILL)  # the main process and its pool child, no chance to clean up
    worker.wait(timeout=10)
    row = TrainingJob.objects.get(pk=job_id)
    assert row.status == TrainingJob.Status.RUNNING  # nobody told the database

    # The sweeper fails it once the heartbeat is older than the stale limit.
    stale = 2
    while (time.time() - row.heartbeat.timestamp()) <= stale:
        time.sleep(0.2)
    assert services.training_jobs_sweep(stale_seconds=stale) == 1
    job = rig.get(job_id)
    assert job["status"] == "failed"
    assert "no heartbeat" in job["error"] and "deployed model is unchanged" in job["error"]
    assert job["model"] is None
    assert list(ModelVersion.objects.filter(project=rig.project, deployed=True).values_list("pk", flat=True)) == [
        deployed.pk
    ]
    assert not ModelVersion.objects.filter(project=rig.project, mode=ModelVersion.Mode.FULL).exists()

    # The killed worker never acknowledged the message (acks_late): Redis hands it to another
    # worker once its visibility timeout (hours) has passed. Age it instead of waiting, then a fresh
    # worker restores it at start-up; the redelivered task must find the job failed and do nothing.
    broker = redis.Redis.from_url(rig.redis_url)
    tags = broker.zrange("unacked_index", 0, -1)
    assert len(tags) == 1, tags
    broker.zadd("unacked_index", {tags[0]: 0})
    _, log2 = rig.start_worker("successor")
    deadline = time.monotonic() + 90
    while "training.tasks.run_training_job" not in log2.read_text() or " succeeded in " not in log2.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"the unacknowledged task was not redelivered within 90 s\n{rig.logs()}")
        time.sleep(0.3)
    assert ": None" in log2.read_text().split(" succeeded in ", 1)[1].splitlines()[0]
    row = TrainingJob.objects.get(pk=job_id)
    assert row.status == TrainingJob.Status.FAILED and row.attempts == 1
    assert list(ModelVersion.objects.filter(project=rig.project, deployed=True).values_list("pk", flat=True)) == [
        deployed.pk
    ]
    assert not ModelVersion.objects.filter(project=rig.project, mode=ModelVersion.Mode.FULL).exists()
    assert broker.zcard("unacked_index") == 0  # acknowledged this time


def test_a_cancel_arriving_after_the_last_training_step_still_wins(team, settings, tmp_path, monkeypatch):
    """In process: should_stop is polled only inside the loop, so full_train checks again afterwards."""
    from labeling.tests.factories import make_sample
    from training import full, runner, services
    from training.models import ModelVersion, TrainingJob

    files = _dataset_files()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    settings.PICTOR_FINETUNE_BACKBONE = "lite0"
    settings.PICTOR_FINETUNE_BACKBONES = ["lite0"]
    settings.PICTOR_FINETUNE_EPOCHS = 1
    settings.PICTOR_FINETUNE_RESOLUTION = 64
    settings.PICTOR_BACKBONES = ["lite0"]
    for seed, (cls, path) in enumerate((cls, p) for cls, paths in files.items() for p in paths[:5]):
        make_sample(team.project, seed=seed, labels=[cls], data=path.read_bytes())
    services.embeddings_compute(project_id=team.project.pk)  # a full job waits for its quick baseline's
    job = TrainingJob.objects.create(project=team.project, mode="full")
    search = full.recipes.search

    def search_then_cancel(**kwargs):
        result = search(**kwargs)  # the whole loop ran without seeing a cancel
        services.training_job_cancel(job=TrainingJob.objects.get(pk=job.pk))
        return result

    monkeypatch.setattr(full.recipes, "search", search_then_cancel)
    assert runner.training_job_run(job_id=job.pk) == "cancelled"
    job.refresh_from_db()
    assert job.status == "cancelled" and job.model_id is None
    assert not ModelVersion.objects.filter(project=team.project).exists()
    assert not any(tmp_path.glob("projects/*/models/*"))


def test_it_fails_a_killed_workers_job_through_the_beat_scheduled_sweep(rig):
    """As `make run` runs it: beat schedules the sweep onto the default worker; nobody calls it here."""
    from training import runner
    from training.models import ModelVersion, TrainingJob

    from training import services

    assert runner.quick_retrain_run(project_id=rig.project.pk) == "succeeded"
    # Deployed by an admin (pinned): background quick retrains (the beat's sweeps also resume
    # missing features, which retrains) must not replace it either.
    deployed = services.model_deploy(model=ModelVersion.objects.get(project=rig.project, deployed=True))
    worker, _ = rig.start_worker("doomed", PICTOR_FINETUNE_EPOCHS="60", PICTOR_FINETUNE_SECONDS="120")
    job_id = rig.post_full()
    assert rig.poll(job_id, _training, timeout=120)["status"] == "running"
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    env = clean_env(
        **{
            "PICTOR_DATA_DIR": str(rig.data_dir),
            "DATABASE_URL": rig.database_url,
            "REDIS_URL": rig.redis_url,
            "SECRET_KEY": "w" * 40,
            "PICTOR_BACKBONES": "lite0",
            "PICTOR_SWEEP_SECONDS": "1",
            "PICTOR_JOB_STALE_SECONDS": "3",
            "OMP_NUM_THREADS": "1",
        }
    )
    for name, launch in {
        "default": lambda log: celery_worker("default,embeddings", env=env, log=log, name="default"),
        "beat": lambda log: celery_beat(env=env, log=log),
    }.items():
        log = rig.tmp / f"{name}.log"
        rig.workers.append((launch(log), log))
    job = rig.poll(job_id, _final, timeout=45)
    assert job["status"] == "failed" and "deployed model is unchanged" in job["error"], job
    assert list(ModelVersion.objects.filter(project=rig.project, deployed=True).values_list("pk", flat=True)) == [
        deployed.pk
    ]
    assert not ModelVersion.objects.filter(project=rig.project, mode=ModelVersion.Mode.FULL).exists()
    assert TrainingJob.objects.get(pk=job_id).model is None
    assert "soft_time_limit must be less" not in rig.logs()
