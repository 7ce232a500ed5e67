"""Writes of the training app: model versions (create, deploy, delete, prune)."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from projects.models import Project
from training.models import HeldOutPrediction, LearningPoint, ModelVersion, TrainingJob

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
            learning_point_record(model=model)
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


class WorseThanQuick(Exception):
    """Deploying a full model that lost to the quick model on its own held-out split, unconfirmed."""

    def __init__(self, model: ModelVersion):
        m = model.metrics or {}
        self.accuracy = float(m["accuracy"])
        self.baseline = float(m["baseline_quick"]["accuracy"])
        super().__init__(
            f"Version {model.version} scored {self.accuracy:.3f} on its held-out split, below the quick model's "
            f"{self.baseline:.3f} on the same split: not deployed. Deploying it anyway needs an explicit override."
        )


@transaction.atomic
def model_deploy(*, model: ModelVersion, pinned: bool = True, force: bool = False) -> ModelVersion:
    """Make `model` the project's deployed version; the previous one stops being deployed.

    A full model worse than the quick model on the same split raises WorseThanQuick unless a human
    confirmed it (`force`): the page's confirmation, or an admin's `{"force": true}` in the API.
    """
    if not force and worse_than_quick(model=model):
        raise WorseThanQuick(model)
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


def model_metrics_update(*, model: ModelVersion, metrics: dict) -> ModelVersion:
    """Replace a version's metrics (the zero-shot version is re-scored as labels arrive)."""
    with transaction.atomic():
        ModelVersion.objects.filter(pk=model.pk).update(metrics=metrics)
        model.metrics = metrics
        learning_point_record(model=model)
    return model


#: Points of the learning curve kept per project (the newest).
LEARNING_POINTS_KEPT = 500


def _labels_seen(model: ModelVersion) -> int:
    """How many labeled samples the version's accuracy stands on (what the curve's x axis counts)."""
    m = model.metrics or {}
    if model.mode == ModelVersion.Mode.ZERO_SHOT:
        return int(m.get("n_evaluated") or 0)
    if model.mode == ModelVersion.Mode.FULL and m.get("split"):
        return int(sum(m["split"].values()))
    return int(model.n_train)


def learning_point_record(*, model: ModelVersion) -> LearningPoint | None:
    """A point of the learning curve for an honestly measured version (a repeat of the last point of
    the same version and label count is not stored twice)."""
    m = model.metrics or {}
    n = _labels_seen(model)
    if m.get("accuracy") is None or m.get("honest") is False or n <= 0:
        return None
    last = LearningPoint.objects.filter(project_id=model.project_id, version=model.version).order_by("-id").first()
    if last is not None and last.n_labels == n and abs(last.accuracy - float(m["accuracy"])) < 1e-9:
        return last
    point = LearningPoint.objects.create(
        project_id=model.project_id, version=model.version, mode=model.mode, n_labels=n, accuracy=float(m["accuracy"])
    )
    stale = LearningPoint.objects.filter(project_id=model.project_id).order_by("-id")[LEARNING_POINTS_KEPT:]
    LearningPoint.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
    return point


#: Versions the product deploys by itself; a person's choice (pinned, or a full model) is never replaced.
AUTOMATIC_MODES = (ModelVersion.Mode.QUICK, ModelVersion.Mode.ZERO_SHOT)


def automatic_choice_open(*, deployed: ModelVersion | None) -> bool:
    """Whether the product may choose what answers: nothing deployed, or an unpinned automatic version."""
    return deployed is None or (deployed.mode in AUTOMATIC_MODES and not deployed.pinned)


@transaction.atomic
def model_deploy_automatic(*, model: ModelVersion) -> bool:
    """Deploy ``model`` (a quick or zero-shot version the product chose) unless a person chose what
    answers; checked under the project's row lock, so a deployment made meanwhile by hand stays."""
    Project.objects.select_for_update().filter(pk=model.project_id).first()
    deployed = ModelVersion.objects.filter(project=model.project_id, deployed=True).first()
    if not automatic_choice_open(deployed=deployed):
        return False
    if deployed is None or deployed.pk != model.pk:
        model_deploy(model=model, pinned=False)
    return True


@transaction.atomic
def zero_shot_deploy_if_idle(*, model: ModelVersion) -> bool:
    """Deploy a zero-shot version while nothing else answers: no deployment yet, or an older zero-shot
    one that nobody pinned (the labels changed). A trained model, or a hand-deployed one, stays."""
    Project.objects.select_for_update().filter(pk=model.project_id).first()
    deployed = ModelVersion.objects.filter(project=model.project_id, deployed=True).first()
    if deployed is None or (
        deployed.mode == ModelVersion.Mode.ZERO_SHOT and deployed.pk != model.pk and not deployed.pinned
    ):
        model_deploy(model=model, pinned=False)
        return True
    return False


def zero_shot_models_prune(*, project, keep: ModelVersion) -> int:
    """Older zero-shot versions (made for label sets that changed since), unless deployed or pinned."""
    from labeling.storage import files_delete

    old = list(
        ModelVersion.objects.filter(project=project, mode=ModelVersion.Mode.ZERO_SHOT, deployed=False, pinned=False)
        .exclude(pk=keep.pk)
        .only("pk", "artifact_name")
    )
    names = [m.artifact_name for m in old]
    ModelVersion.objects.filter(pk__in=[m.pk for m in old]).delete()
    transaction.on_commit(lambda: files_delete(names))
    return len(old)


def model_delete(*, model: ModelVersion) -> None:
    from django.core.exceptions import ValidationError

    from labeling.storage import files_delete

    from django.db.models import ProtectedError, RestrictedError

    if model.deployed:
        raise ValidationError("The deployed model cannot be deleted; deploy another version first.")
    name = model.artifact_name
    try:
        with transaction.atomic():
            model.delete()
    except (ProtectedError, RestrictedError):
        # A higher app (batch jobs) holds results that need this version.
        raise ValidationError("This version is in use (batch jobs ran on it); it cannot be deleted.") from None
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
    from django.db.models import ProtectedError, RestrictedError

    names = []
    for m in old:
        try:
            with transaction.atomic():
                m.delete()
        except (ProtectedError, RestrictedError):  # in use by a higher app (a batch job pinned it): kept
            continue
        names.append(m.artifact_name)
    TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK, status__in=TrainingJob.FINAL).exclude(
        pk__in=TrainingJob.objects.filter(project=project, mode=ModelVersion.Mode.QUICK)
        .order_by("-created")
        .values("pk")[:20]
    ).delete()
    transaction.on_commit(lambda: files_delete(names))
    return len(names)
