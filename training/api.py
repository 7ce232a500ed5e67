"""REST API for trainings and model versions (shared/API.md)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError
from projects.api_auth import api_access
from projects.roles import Role
from training import selectors, services
from training.models import ModelVersion, TrainingJob


def _iso(dt):
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def job_json(job: TrainingJob) -> dict:
    return {
        "id": str(job.pk),
        "mode": job.mode,
        "status": job.status,
        "progress": round(job.progress, 4),
        "message": job.message,
        "error": job.error or None,
        "model": {"id": str(job.model_id), "version": job.model.version} if job.model_id and job.model else None,
        "created": _iso(job.created),
        "finished": _iso(job.finished),
    }


def model_json(model: ModelVersion) -> dict:
    m = model.metrics or {}
    return {
        "id": str(model.pk),
        "version": model.version,
        "mode": model.mode,
        "created": _iso(model.created),
        "deployed": model.deployed,
        "features": model.features,
        "labels": model.label_names,
        "n_train": model.n_train,
        "metrics": {
            "accuracy": m.get("accuracy"),
            "macro_f1": m.get("macro_f1"),
            "per_label": m.get("per_label", {}),
            "confusion_matrix": m.get("confusion_matrix", {"labels": [], "matrix": []}),
            "evaluation": m.get("evaluation"),
        },
    }


def _job(access, job_id) -> TrainingJob:
    job = selectors.training_job_get(project=access.project, job_id=job_id)
    if job is None:
        raise ApiError("not_found", "No such training in this project.", 404)
    return job


def _model(access, model_id) -> ModelVersion:
    model = selectors.model_get(project=access.project, model_id=model_id)
    if model is None:
        raise ApiError("not_found", "No such model in this project.", 404)
    return model


class TrainingListView(APIView):
    @doc.endpoint(
        "trainings_list", tag="trainings", parameters=[doc.PROJECT], summary="The project's recent trainings",
        responses={200: doc.TrainingListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        return Response({"results": [job_json(j) for j in selectors.training_job_list(project=access.project)[:50]]})

    @doc.endpoint(
        "trainings_create", tag="trainings", parameters=[doc.PROJECT],
        summary="Start a training (admin): `quick` (a linear head on embeddings) or `full` (a fine-tune)",
        request=doc.TrainingCreateSerializer,
        responses={
            202: doc.TrainingCreatedSerializer,
            **doc.errors(400, 409, r409="`conflict`: a full training of this project is already queued or running."),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        mode = request.data.get("mode") if isinstance(request.data, dict) else None
        if mode not in ModelVersion.Mode.values:
            raise ApiError("invalid", "mode must be 'quick' or 'full'.", 400, {"mode": ["must be quick or full"]})
        if mode == ModelVersion.Mode.FULL and selectors.training_job_active(project=access.project, mode=mode):
            raise ApiError("conflict", "A full training of this project is already queued or running.", 409)
        job = services.training_job_create(project=access.project, mode=mode, user=access.user)
        return Response({"id": str(job.pk), "status": job.status, "mode": job.mode}, status=202)


class TrainingDetailView(APIView):
    @doc.endpoint(
        "training_retrieve", tag="trainings", parameters=[doc.PROJECT, doc.JOB], summary="One training and its progress",
        responses={200: doc.TrainingSerializer, **doc.errors()},
    )
    def get(self, request, project_id, job_id):
        access = api_access(request, project_id)
        return Response(job_json(_job(access, job_id)))


class TrainingCancelView(APIView):
    @doc.endpoint(
        "training_cancel", tag="trainings", parameters=[doc.PROJECT, doc.JOB],
        summary="Cancel a training (admin): a queued one now, a running one at its next step",
        responses={202: doc.TrainingSerializer, **doc.errors(409, r409="`conflict`: the training has already ended.")},
    )
    def post(self, request, project_id, job_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        job = _job(access, job_id)
        if job.status in TrainingJob.FINAL:
            raise ApiError("conflict", f"The training has already ended ({job.status}).", 409)
        job = services.training_job_cancel(job=job)
        return Response(job_json(job), status=202)


class ModelListView(APIView):
    @doc.endpoint(
        "models_list", tag="models", parameters=[doc.PROJECT], summary="The project's model versions, with metrics",
        responses={200: doc.ModelListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        return Response({"results": [model_json(m) for m in selectors.model_list(project=access.project)]})


class ModelDetailView(APIView):
    @doc.endpoint(
        "model_retrieve", tag="models", parameters=[doc.PROJECT, doc.MODEL], summary="One model version",
        responses={200: doc.ModelSerializer, **doc.errors()},
    )
    def get(self, request, project_id, model_id):
        access = api_access(request, project_id)
        return Response(model_json(_model(access, model_id)))

    @doc.endpoint(
        "model_delete", tag="models", parameters=[doc.PROJECT, doc.MODEL], summary="Delete a model version (admin)",
        responses={204: doc.NO_CONTENT, **doc.errors(409, r409="`conflict`: the deployed model cannot be deleted.")},
    )
    def delete(self, request, project_id, model_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        try:
            services.model_delete(model=_model(access, model_id))
        except ValidationError as exc:
            raise ApiError("conflict", " ".join(exc.messages), 409) from None
        return Response(status=204)


class ModelDeployView(APIView):
    @doc.endpoint(
        "model_deploy", tag="models", parameters=[doc.PROJECT, doc.MODEL],
        summary="Deploy a model version (admin); the previous one stops being deployed",
        responses={200: doc.ModelSerializer, **doc.errors()},
    )
    def post(self, request, project_id, model_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        model = services.model_deploy(model=_model(access, model_id))
        return Response(model_json(model))
