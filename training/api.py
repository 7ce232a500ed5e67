"""REST API for trainings and model versions (shared/API.md): validated and rendered by
training/serializers.py, the same classes the schema is generated from."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError
from projects.api_auth import api_access
from projects.roles import Role
from training import pipeline, selectors, services
from training import serializers as io
from training.models import ModelVersion, TrainingJob


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
    parser_classes = [JSONParser]

    @doc.endpoint(
        "trainings_list",
        tag="trainings",
        parameters=[doc.PROJECT],
        summary="The project's recent trainings",
        responses={200: io.TrainingListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        jobs = selectors.training_job_list(project=access.project)[:50]
        return Response(io.TrainingListSerializer({"results": jobs}).data)

    @doc.endpoint(
        "trainings_create",
        tag="trainings",
        parameters=[doc.PROJECT],
        summary="Start a training (admin): `quick` (a linear head on embeddings) or `full` (a fine-tune)",
        request=io.TrainingCreateSerializer,
        responses={
            202: io.TrainingCreatedSerializer,
            **doc.errors(
                400, 409, 415, r409="`conflict`: a full training of this project is already queued or running."
            ),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        form = io.TrainingCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            job = pipeline.training_start(project=access.project, mode=form.validated_data["mode"], user=access.user)
        except services.TrainingConflict as exc:
            raise ApiError("conflict", str(exc), 409) from None
        return Response(io.TrainingCreatedSerializer(job).data, status=202)


class TrainingDetailView(APIView):
    @doc.endpoint(
        "training_retrieve",
        tag="trainings",
        parameters=[doc.PROJECT, doc.JOB],
        summary="One training and its progress",
        responses={200: io.TrainingSerializer, **doc.errors()},
    )
    def get(self, request, project_id, job_id):
        access = api_access(request, project_id)
        return Response(io.TrainingSerializer(_job(access, job_id)).data)


class TrainingCancelView(APIView):
    @doc.endpoint(
        "training_cancel",
        tag="trainings",
        parameters=[doc.PROJECT, doc.JOB],
        summary="Cancel a training (admin): a queued one now, a running one at its next step",
        responses={202: io.TrainingSerializer, **doc.errors(409, r409="`conflict`: the training has already ended.")},
    )
    def post(self, request, project_id, job_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        job = _job(access, job_id)
        if job.status in TrainingJob.FINAL:
            raise ApiError("conflict", f"The training has already ended ({job.status}).", 409)
        job = services.training_job_cancel(job=job)
        return Response(io.TrainingSerializer(job).data, status=202)


class ModelListView(APIView):
    @doc.endpoint(
        "models_list",
        tag="models",
        parameters=[doc.PROJECT],
        summary="The project's model versions, with metrics",
        responses={200: io.ModelListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        return Response(io.ModelListSerializer({"results": selectors.model_list(project=access.project)}).data)


class ModelDetailView(APIView):
    @doc.endpoint(
        "model_retrieve",
        tag="models",
        parameters=[doc.PROJECT, doc.MODEL],
        summary="One model version",
        responses={200: io.ModelSerializer, **doc.errors()},
    )
    def get(self, request, project_id, model_id):
        access = api_access(request, project_id)
        return Response(io.ModelSerializer(_model(access, model_id)).data)

    @doc.endpoint(
        "model_delete",
        tag="models",
        parameters=[doc.PROJECT, doc.MODEL],
        summary="Delete a model version (admin)",
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
    parser_classes = [JSONParser]

    @doc.endpoint(
        "model_deploy",
        tag="models",
        parameters=[doc.PROJECT, doc.MODEL],
        summary="Deploy a model version (admin); the previous one stops being deployed",
        description="A full model that scored below the quick model on its own held-out split "
        '(`worse_than_quick`) is refused with 409 `conflict` unless the body says `{"force": true}`. '
        "The body is optional.",
        request=io.ModelDeploySerializer,
        responses={
            200: io.ModelSerializer,
            **doc.errors(
                400,
                409,
                415,
                r409="`conflict`: the model is worse than the quick model on the same split; "
                'send `{"force": true}` to deploy it anyway.',
            ),
        },
    )
    def post(self, request, project_id, model_id):
        access = api_access(request, project_id, minimum=Role.ADMIN)
        form = io.ModelDeploySerializer(data=request.data or {})
        form.is_valid(raise_exception=True)
        try:
            model = services.model_deploy(model=_model(access, model_id), force=form.validated_data["force"])
        except services.WorseThanQuick as exc:
            raise ApiError("conflict", str(exc), 409) from None
        return Response(io.ModelSerializer(model).data)
