"""Writes of the training app: model versions (create, deploy, delete, prune)."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from projects.models import Project
from training.models import HeldOutPrediction, ModelVersion, TrainingJob

log = logging.getLogger(__name__)


def model_version_create(
    *,
    project,
    mode: str,
    features: str,
    label_names: list[str],
    thresholds,
    metrics: dict,
    predictions: list,
    n_train: int,
    artifact: bytes,
    suffix: str,
) -> ModelVersion:
    """Store the artifact first, then the row that points at it (removed again if the row fails)."""
    from labeling.storage import files_delete, files_write

    model_id = uuid.uuid4()
    name = f"projects/{project.pk}/models/{model_id}.{suffix}"
    files_write([(name, artifact)])
    try:
        with transaction.atomic():
            # Lock the project row so concurrent trainings get distinct version numbers.
            Project.objects.select_for_update().filter(pk=project.pk).first()
            last = (
                ModelVersion.objects.filter(project=project)
                .order_by("-version")
                .values_list("version", flat=True)
                .first()
            )
            model = ModelVersion.objects.create(
                id=model_id,
                project=project,
                version=(last or 0) + 1,
                mode=mode,
                features=features,
                label_names=label_names,
                thresholds=thresholds,
                metrics=metrics,
                n_train=n_train,
                artifact_name=name,
            )
            held_out_store(model=model, predictions=predictions)
            return model
    except BaseException:
        files_delete([name])
        raise


def _names(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def held_out_store(*, model: ModelVersion, predictions: list) -> int:
    """Store ``[sample id, true, predicted, confidence]`` rows (names or name lists) of a model."""
    rows = [
        HeldOutPrediction(model=model, sample_id=uuid.UUID(str(sid)), true=_names(t), predicted=_names(p), confidence=c)
        for sid, t, p, c in predictions
    ]
    HeldOutPrediction.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def worse_than_quick(*, model: ModelVersion) -> bool:
    """A full model that scored below the quick model's recipe on its own held-out split: it must
    not be deployed (or shown as better) without saying so."""
    m = model.metrics or {}
    base = m.get("baseline_quick") or {}
    if model.mode != ModelVersion.Mode.FULL or m.get("accuracy") is None or base.get("accuracy") is None:
        return False
    return float(m["accuracy"]) < float(base["accuracy"])


@transaction.atomic
def model_deploy(*, model: ModelVersion, pinned: bool = True) -> ModelVersion:
    """Make `model` the project's deployed version; the previous one stops being deployed."""
    # Serialise deployments of one project on its row; the partial unique index backs this up.
    Project.objects.select_for_update().filter(pk=model.project_id).first()
    ModelVersion.objects.filter(project=model.project_id, deployed=True).exclude(pk=model.pk).update(deployed=False)
    fields = {"deployed": True, "deployed_at": timezone.now()}
    if pinned:
        fields["pinned"] = True
    ModelVersion.objects.filter(pk=model.pk).update(**fields)
    model.refresh_from_db()
    transaction.on_commit(lambda: _model_changed(model.project_id))
    return model


def model_delete(*, model: ModelVersion) -> None:
    from django.core.exceptions import ValidationError

    from labeling.storage import files_delete

    if model.deployed:
        raise ValidationError("The deployed model cannot be deleted; deploy another version first.")
    name = model.artifact_name
    model.delete()
    transaction.on_commit(lambda: files_delete([name]))


def _model_changed(project_id) -> None:
    from training.signals import model_changed

    model_changed.send(sender=ModelVersion, project_id=project_id)


def quick_models_prune(*, project, keep: int = 5) -> int:
    """Quick retrains happen on every label: keep the newest few, the deployed and any pinned ones."""
    from labeling.storage import files_delete

    old = list(
        ModelVersion.objects.filter(
            project=project, mode=ModelVersion.Mode.QUICK, deployed=False, pinned=False
        ).order_by("-version")[keep:]
    )
    names = [m.artifact_name for m in old]
    ModelVersion.objects.filter(pk__in=[m.pk for m in old]).delete()
    TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK, status__in=TrainingJob.FINAL).exclude(
        pk__in=TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK)
        .order_by("-created")
        .values("pk")[:20]
    ).delete()
    transaction.on_commit(lambda: files_delete(names))
    return len(old)
