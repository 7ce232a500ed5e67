"""REST API of batch jobs (shared/API.md "Batch jobs"), validated and rendered by batches/serializers.py."""

from __future__ import annotations

import csv
import io
import json

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import selectors, services
from batches import serializers as io_
from batches.models import Batch
from config import schema as doc
from config.api import ApiError
from projects.api_auth import api_access
from projects.roles import Role

BATCH = doc.path("batch_id", "The batch's id.")
# Who starts, steers and harvests batches: they run the project's model over thousands of items.
BATCH_ROLE = Role.ADMIN


def _batch(access, batch_id) -> Batch:
    batch = selectors.batch_get(project=access.project, batch_id=batch_id)
    if batch is None:
        raise ApiError("not_found", "No such batch in this project.", 404)
    return batch


def _invalid(exc: services.BatchInvalid) -> ApiError:
    return ApiError(exc.code, exc.message, exc.status, {exc.field: [exc.message]})


class BatchListView(APIView):
    parser_classes = [JSONParser]

    @doc.endpoint(
        "batches_list",
        tag="batches",
        parameters=[doc.PROJECT],
        summary="The project's batch jobs, newest first",
        responses={200: io_.BatchListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        batches = selectors.batch_list(project=access.project)[:100]
        return Response(io_.BatchListSerializer({"results": batches}).data)

    @doc.endpoint(
        "batches_create",
        tag="batches",
        parameters=[doc.PROJECT],
        summary="Run a model over an archive, a folder under an import root, or an S3 prefix (admin)",
        description="The model is the deployed one unless named, fixed for the batch's life, as is `fps` (the "
        "sampling rate of videos in the source, default 1). A bad source "
        "(missing, unreadable, outside PICTOR_IMPORT_ROOTS, no S3 credentials) answers 400 `invalid` and "
        "creates nothing.",
        request=io_.BatchCreateSerializer,
        responses={
            202: io_.BatchCreatedSerializer,
            **doc.errors(400, 409, 415, r409="`no_model`: nothing is deployed yet and no model was named."),
        },
    )
    def post(self, request, project_id):
        from inference.services import NoModel, UnknownModel

        access = api_access(request, project_id, minimum=BATCH_ROLE)
        form = io_.BatchCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            batch = services.batch_start(
                project=access.project,
                source=data["source"],
                model_id=str(data["model"]) if data.get("model") else None,
                top_k=data.get("top_k"),
                fps=data["fps"],
                user=access.user,
            )
        except NoModel:
            raise ApiError("no_model", "No model is deployed in this project yet; deploy one or name one.", 409)
        except UnknownModel:
            raise ApiError("invalid", "No such model in this project.", 400, {"model": ["No such model."]})
        except services.BatchInvalid as exc:
            raise _invalid(exc)
        return Response(io_.BatchCreatedSerializer(batch).data, status=202)


class BatchUploadView(APIView):
    parser_classes = [MultiPartParser]

    @doc.endpoint(
        "batch_upload",
        tag="batches",
        parameters=[doc.PROJECT],
        summary="Upload a zip or tar for a batch (admin); streamed to storage, never held in memory",
        request={"multipart/form-data": io_.BatchUploadFormSerializer},
        responses={
            201: OpenApiResponse(
                {"type": "object", "properties": {"upload_id": {"type": "string"}, "bytes": {"type": "integer"}}},
                description="Stored.",
            ),
            **doc.errors(400, 413, 415, r413="`too_large`: over PICTOR_BATCH_MAX_UPLOAD_BYTES."),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=BATCH_ROLE)
        form = io_.BatchUploadFormSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            upload = services.batch_upload_create(
                project=access.project, fileobj=form.validated_data["file"], user=access.user
            )
        except services.BatchInvalid as exc:
            raise _invalid(exc)
        return Response({"upload_id": str(upload.pk), "bytes": upload.bytes}, status=201)


class BatchDetailView(APIView):
    @doc.endpoint(
        "batch_retrieve",
        tag="batches",
        parameters=[doc.PROJECT, BATCH],
        summary="One batch and its progress",
        responses={200: io_.BatchSerializer, **doc.errors()},
    )
    def get(self, request, project_id, batch_id):
        access = api_access(request, project_id)
        return Response(io_.BatchSerializer(_batch(access, batch_id)).data)


def _control(name: str, action, summary: str):
    class View(APIView):
        @doc.endpoint(
            f"batch_{name}",
            tag="batches",
            parameters=[doc.PROJECT, BATCH],
            summary=summary,
            responses={202: io_.BatchSerializer, **doc.errors(409, r409="`conflict`: the batch has already ended.")},
        )
        def post(self, request, project_id, batch_id):
            access = api_access(request, project_id, minimum=BATCH_ROLE)
            try:
                batch = action(batch=_batch(access, batch_id))
            except services.BatchConflict as exc:
                raise ApiError("conflict", str(exc), 409)
            return Response(io_.BatchSerializer(batch).data, status=202)

    View.__name__ = f"Batch{name.title()}View"
    return View


BatchPauseView = _control("pause", services.batch_pause, "Pause a batch (admin): running chunks finish, no new ones")
BatchResumeView = _control("resume", services.batch_resume, "Resume a paused batch (admin)")
BatchCancelView = _control("cancel", services.batch_cancel, "Cancel a batch (admin); its results so far stay")


def _csv_line(values: list) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def results_stream(*, batch: Batch, qs, fmt: str):
    """The results as text lines: CSV, JSON lines, or one {"series": [...]} document, row by row."""
    from labeling.services import csv_cell

    records = selectors.result_records(batch=batch, qs=qs)
    if fmt == "csv":
        head = ["key", "sha256", "label", "confidence", "labels", "error_code", "error_message", "segments"]
        yield _csv_line(head)
        for r in records:
            if "error" in r:
                yield _csv_line(
                    [csv_cell(r["key"]), "", "", "", "", r["error"]["code"], csv_cell(r["error"]["message"]), ""]
                )
                continue
            label = r["label"] if "label" in r else ";".join(r["present"])
            pairs = ";".join(f"{x['label']}:{x['confidence']}" for x in r["labels"])
            spans = ";".join(
                f"{x['label']}@{x['startTimeMs']}-{x['stopTimeMs']}:{x['confidence']}" for x in r.get("segments", [])
            )
            yield _csv_line(
                [
                    csv_cell(r["key"]),
                    r["sha256"],
                    csv_cell(label),
                    r["confidence"],
                    csv_cell(pairs),
                    "",
                    "",
                    csv_cell(spans),
                ]
            )
    elif fmt == "jsonl":
        for r in records:
            yield json.dumps(r, ensure_ascii=False) + "\n"
    else:
        yield '{"series":['
        first = True
        for r in records:
            for entry in selectors.series_entries(batch=batch, record=r):
                yield ("" if first else ",") + json.dumps(entry, ensure_ascii=False)
                first = False
        yield "]}\n"


_RESULT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "series": "application/json"}


class BatchResultsView(APIView):
    @doc.endpoint(
        "batch_results",
        tag="batches",
        parameters=[doc.PROJECT, BATCH, io_.ResultsFilterSerializer],
        summary="The batch's results, streamed: CSV, JSON lines (default) or the series format",
        description="One record per item: `{key, sha256, label|present, confidence, labels}` (a video adds its "
        "label `segments`) or `{key, error}` for an unreadable item. Filters by predicted label and confidence range; `page` cuts pages of "
        f"{selectors.RESULTS_PAGE} items in listing order.",
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.BINARY, description="JSON lines, one ResultRecord each."
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="CSV with a header row."),
            (200, "application/json"): OpenApiResponse(
                io_.BatchSeriesSerializer,
                description="format=series: whole-image entries of the engine format (videos: one per label "
                "segment, with its real start and stop times).",
            ),
            **doc.errors(400),
        },
    )
    def get(self, request, project_id, batch_id):
        access = api_access(request, project_id)
        batch = _batch(access, batch_id)
        query = io_.ResultsFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        qs = selectors.results_filter(
            batch=batch,
            label=q.get("label"),
            min_confidence=q.get("min_confidence"),
            max_confidence=q.get("max_confidence"),
        )
        qs = selectors.results_page(qs, page=q.get("page"))
        fmt = q["format"]
        response = StreamingHttpResponse(results_stream(batch=batch, qs=qs, fmt=fmt), content_type=_RESULT_TYPES[fmt])
        ext = {"csv": "csv", "jsonl": "jsonl", "series": "json"}[fmt]
        response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.{ext}"'
        return response


class BatchToSamplesView(APIView):
    parser_classes = [JSONParser]

    @doc.endpoint(
        "batch_to_samples",
        tag="batches",
        parameters=[doc.PROJECT, BATCH],
        summary='Send items to labeling (labeler and up): they become samples with `"source": "batch"`',
        request=io_.ToSamplesSerializer,
        responses={202: io_.ToSamplesAcceptedSerializer, **doc.errors(400, 415)},
    )
    def post(self, request, project_id, batch_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        batch = _batch(access, batch_id)
        form = io_.ToSamplesSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        count = services.to_samples_start(
            batch=batch,
            keys=form.validated_data.get("keys"),
            max_confidence=form.validated_data.get("max_confidence"),
            user=access.user,
        )
        return Response({"items": count}, status=202)
