"""Writes of the training app, one module per entity; import them from here.

- embeddings: computing and storing image features
- jobs: training jobs and their state machine
- models: model versions (create, deploy, delete, prune; the zero-shot version's deployment)
"""

from training.services.embeddings import embeddings_compute
from training.services.features import (
    feature_store_check,
    feature_store_rebuild,
    feature_store_sync,
    feature_stores_catch_up,
    feature_stores_delete,
)
from training.services.jobs import (
    JobGone,
    TrainingConflict,
    training_job_cancel,
    training_job_cancel_requested,
    training_job_claim,
    training_job_create,
    training_job_finish,
    training_job_heartbeat,
    training_job_wait,
    training_jobs_sweep,
)
from training.services.models import (
    WorseThanQuick,
    automatic_choice_open,
    model_delete,
    learning_point_record,
    model_deploy,
    model_deploy_automatic,
    model_metrics_update,
    model_version_create,
    quick_models_prune,
    worse_than_quick,
    zero_shot_deploy_if_idle,
    zero_shot_models_prune,
)

__all__ = [
    "JobGone",
    "TrainingConflict",
    "WorseThanQuick",
    "automatic_choice_open",
    "embeddings_compute",
    "feature_store_check",
    "feature_store_rebuild",
    "feature_store_sync",
    "feature_stores_catch_up",
    "feature_stores_delete",
    "model_delete",
    "learning_point_record",
    "model_deploy",
    "model_deploy_automatic",
    "model_metrics_update",
    "model_version_create",
    "quick_models_prune",
    "training_job_cancel",
    "training_job_cancel_requested",
    "training_job_claim",
    "training_job_create",
    "training_job_finish",
    "training_job_heartbeat",
    "training_job_wait",
    "training_jobs_sweep",
    "worse_than_quick",
    "zero_shot_deploy_if_idle",
    "zero_shot_models_prune",
]
