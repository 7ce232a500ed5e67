"""REST API for labels and samples (shared/API.md). Views parse and answer; services do the work."""

from __future__ import annotations

import base64
import binascii

from django.core.exceptions import ValidationError
from django.http import FileResponse
from django.core.files.storage import default_storage
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError, Pagination, error_body
from labeling import selectors, services
from labeling.models import Sample
from projects.api_auth import api_access
from projects.roles import Role


def sample_json(request: Request, sample: Sample) -> dict:
    kwargs = {"project_id": sample.project_id, "sample_id": sample.pk}
    return {
        "id": str(sample.pk),
        "sha256": sample.sha256,
        "width": sample.width,
        "height": sample.height,
        "labels": selectors.sample_label_names(sample),
        "image_url": request.build_absolute_uri(reverse("api_sample_image", kwargs=kwargs)),
        "thumbnail_url": request.build_absolute_uri(reverse("api_sample_thumbnail", kwargs=kwargs)),
        "filename": sample.filename,
        "source": sample.source,
        "created": sample.created.isoformat().replace("+00:00", "Z"),
    }


def _bool_param(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ApiError("invalid", f"{name} must be true or false.", 400, {name: ["must be true or false"]})


def _decode_b64(data, index: int) -> bytes:
    if not isinstance(data, str) or not data:
        raise ValueError(f"item {index}: 'data' must be a base64 string")
    if data.startswith("data:") and "," in data:  # tolerate data: URLs from browsers
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"item {index}: 'data' is not valid base64") from None


def _labels_list(value, index: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"item {index}: 'labels' must be a list of label names")
    return value


def upload_items(request: Request) -> list[services.IngestItem]:
    """Turn a multipart or JSON upload into ingest items, or raise ApiError for a malformed request."""
    if request.content_type.startswith("multipart/form-data"):
        files = request.FILES.getlist("file")
        if not files:
            raise ApiError("invalid", "Send one or more images as 'file' parts.", 400, {"file": ["required"]})
        labels = [v for v in request.data.getlist("label") if v.strip()]
        return [services.IngestItem(filename=f.name or "", data=f.read(), labels=list(labels)) for f in files]
    payload = request.data
    if not isinstance(payload, dict):
        raise ApiError("invalid", "Send a JSON object with 'data' or 'items'.", 400)
    raw_items = payload.get("items") if "items" in payload else [payload]
    if not isinstance(raw_items, list) or not raw_items:
        raise ApiError("invalid", "'items' must be a non-empty list.", 400, {"items": ["must be a non-empty list"]})
    items = []
    for i, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or "data" not in raw:
            raise ApiError("invalid", f"item {i}: each item needs 'data' (base64).", 400, {"data": ["required"]})
        try:
            items.append(
                services.IngestItem(
                    filename=str(raw.get("filename") or f"item-{i}"),
                    data=_decode_b64(raw["data"], i),
                    labels=_labels_list(raw.get("labels"), i),
                )
            )
        except ValueError as exc:
            raise ApiError("invalid", str(exc), 400, {"data": [str(exc)]}) from None
    return items


def ingest_response(request: Request, report: services.IngestReport) -> Response:
    """201 when all went in, 207 when mixed, the error's own status when every file failed."""
    entries = []
    for r in report.results:
        if r.ok:
            entries.append({**sample_json(request, r.sample), "duplicate": r.duplicate})
        else:
            entries.append({**error_body(r.error_code, r.error_message), "filename": r.filename})
    failed = [r for r in report.results if not r.ok]
    if not failed:
        return Response({"samples": entries}, status=status.HTTP_201_CREATED)
    if len(failed) < len(report.results):
        return Response({"samples": entries}, status=status.HTTP_207_MULTI_STATUS)
    from labeling.imaging import HTTP_STATUS

    codes = {r.error_code for r in failed}
    code = codes.pop() if len(codes) == 1 else "invalid"
    http = HTTP_STATUS.get(code, 400)
    message = failed[0].error_message if len(failed) == 1 else f"None of the {len(failed)} files was accepted."
    return Response({**error_body(code, message), "samples": entries}, status=http)


class LabelListView(APIView):
    @doc.endpoint(
        "labels_list", tag="labels", parameters=[doc.PROJECT], summary="The project's labels",
        responses={200: doc.LabelListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        return Response({"results": [{"id": str(x.pk), "name": x.name} for x in selectors.label_list(project=access.project)]})

    @doc.endpoint(
        "labels_create", tag="labels", parameters=[doc.PROJECT], summary="Create a label (labeler and up)",
        request=doc.LabelCreateSerializer,
        responses={201: doc.LabelSerializer, **doc.errors(400, 409, r409="`conflict`: a label with that name exists.")},
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        name = request.data.get("name") if isinstance(request.data, dict) else None
        if not isinstance(name, str):
            raise ApiError("invalid", "Send {\"name\": \"...\"}.", 400, {"name": ["required"]})
        try:
            label = services.label_create(project=access.project, name=name)
        except services.Conflict as exc:
            raise ApiError("conflict", str(exc), 409) from None
        return Response({"id": str(label.pk), "name": label.name}, status=201)


class SampleListView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @doc.endpoint(
        "samples_list", tag="samples", parameters=[doc.PROJECT, *doc.SAMPLES_QUERY],
        summary="The project's samples, newest first, a page at a time",
        responses={200: doc.SamplePageSerializer, **doc.errors(400)},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        qs = selectors.sample_list(
            project=access.project,
            labeled=_bool_param(request.query_params.get("labeled"), "labeled"),
            label=services.clean_text(request.query_params.get("label") or "") or None,
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([sample_json(request, s) for s in page])

    @doc.endpoint(
        "samples_create", tag="samples", parameters=[doc.PROJECT],
        summary="Upload images (labeler and up): multipart `file` parts, or JSON with base64 data",
        description="Labels that don't exist yet are created. A file already in the project comes back with its "
        "existing id and `duplicate: true` (its labels are updated if labels were sent). A bad file in a batch "
        "fails only itself: 207 when the batch is mixed.",
        request=doc.SAMPLE_UPLOAD, examples=doc.IMAGE_EXAMPLES,
        responses={
            201: doc.SamplesCreatedSerializer,
            207: OpenApiResponse(doc.SamplesCreatedSerializer, description="Some files failed, some went in."),
            **doc.image_errors(failed=doc.UploadFailedSerializer),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        items = upload_items(request)
        source = Sample.Source.API if access.api_key is not None else Sample.Source.UPLOAD
        report = services.samples_ingest(project=access.project, items=items, user=access.user, source=source)
        return ingest_response(request, report)


def _sample_or_404(access, sample_id) -> Sample:
    sample = selectors.sample_get(project=access.project, sample_id=sample_id)
    if sample is None:
        raise ApiError("not_found", "No such sample in this project.", 404)
    return sample


class SampleDetailView(APIView):
    @doc.endpoint(
        "sample_retrieve", tag="samples", parameters=[doc.PROJECT, doc.SAMPLE],
        summary="One sample, with the deployed model's prediction",
        responses={200: doc.SampleDetailSerializer, **doc.errors()},
    )
    def get(self, request, project_id, sample_id):
        access = api_access(request, project_id)
        sample = _sample_or_404(access, sample_id)
        body = sample_json(request, sample)
        from labeling.hooks import prediction_for

        body["prediction"] = prediction_for(sample=sample)
        return Response(body)

    @doc.endpoint(
        "sample_delete", tag="samples", parameters=[doc.PROJECT, doc.SAMPLE], summary="Delete a sample (labeler and up)",
        responses={204: doc.NO_CONTENT, **doc.errors()},
    )
    def delete(self, request, project_id, sample_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        services.sample_delete(sample=_sample_or_404(access, sample_id))
        return Response(status=204)


class SampleLabelsView(APIView):
    @doc.endpoint(
        "sample_labels_update", tag="samples", parameters=[doc.PROJECT, doc.SAMPLE],
        summary="Set a sample's labels (labeler and up)", request=doc.SampleLabelsSerializer,
        responses={200: doc.SampleSerializer, **doc.errors(400)},
    )
    def put(self, request, project_id, sample_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        sample = _sample_or_404(access, sample_id)
        labels = request.data.get("labels") if isinstance(request.data, dict) else None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ApiError("invalid", "Send {\"labels\": [\"name\", ...]}.", 400, {"labels": ["must be a list of names"]})
        via = "api" if access.api_key is not None else "web"
        try:
            sample = services.sample_labels_set(sample=sample, names=labels, user=access.user, via=via)
        except ValidationError as exc:
            raise ApiError("invalid", " ".join(exc.messages), 400) from None
        return Response(sample_json(request, selectors.sample_get(project=access.project, sample_id=sample.pk)))


class _SampleFileView(APIView):
    field = "image_name"

    def get(self, request, project_id, sample_id):
        access = api_access(request, project_id)
        sample = _sample_or_404(access, sample_id)
        name = getattr(sample, self.field)
        try:
            handle = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise ApiError("not_found", "The stored file is missing.", 404) from None
        content_type = "image/webp" if self.field == "thumbnail_name" else f"image/{sample.format}"
        response = FileResponse(handle, content_type=content_type)
        # Files never change under a sample id, so clients may cache them for a long time.
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response


@doc.extend_schema_view(
    get=doc.endpoint(
        "sample_image", tag="samples", parameters=[doc.PROJECT, doc.SAMPLE], summary="The sample's original image file",
        responses={(200, "image/*"): OpenApiResponse(doc.OpenApiTypes.BINARY, description="The file as uploaded."),
                   **doc.errors()},
    )
)
class SampleImageView(_SampleFileView):
    field = "image_name"


@doc.extend_schema_view(
    get=doc.endpoint(
        "sample_thumbnail", tag="samples", parameters=[doc.PROJECT, doc.SAMPLE], summary="The sample's thumbnail (WebP)",
        responses={(200, "image/webp"): OpenApiResponse(doc.OpenApiTypes.BINARY, description="A small WebP image."),
                   **doc.errors()},
    )
)
class SampleThumbnailView(_SampleFileView):
    field = "thumbnail_name"


class SampleNextView(APIView):
    """The samples the active learner wants labeled next, leased to the caller so teammates get others."""

    @doc.endpoint(
        "samples_next", tag="samples", parameters=[doc.PROJECT, *doc.NEXT_QUERY],
        summary="The unlabeled samples the active learner wants labeled next (labeler and up)",
        description="They are leased to the caller for a while, so teammates get others.",
        responses={200: doc.NextSamplesSerializer, **doc.errors(400)},
    )
    def get(self, request, project_id):
        from labeling import queue
        from labeling.hooks import suggestions_for

        access = api_access(request, project_id, minimum=Role.LABELER)
        raw = request.query_params.get("count", "1")
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if not 1 <= count <= 100:
            raise ApiError("invalid", "count must be a whole number from 1 to 100.", 400, {"count": ["1..100"]})
        holder = queue.holder_for_key(access.api_key) if access.api_key is not None else queue.holder_for_user(request.user)
        items = queue.queue_claim(project=access.project, holder=holder, count=count)
        suggestions = suggestions_for(project=access.project, samples=[i.sample for i in items])
        results = []
        for item in items:
            body = sample_json(request, item.sample)
            results.append(
                {
                    "id": body["id"],
                    "image_url": body["image_url"],
                    "score": item.score,
                    "suggestion": suggestions.get(item.sample.pk),
                }
            )
        return Response({"results": results})


class ProjectExportView(APIView):
    """GET .../export: the dataset as a zip (spooled to disk past 64 MB, streamed back)."""

    @doc.endpoint(
        "project_export", tag="projects", parameters=[doc.PROJECT],
        summary="The dataset as a zip: a folder per label (multi-label: labels.csv) plus samples.csv",
        responses={(200, "application/zip"): OpenApiResponse(doc.OpenApiTypes.BINARY, description="A zip file."),
                   **doc.errors()},
    )
    def get(self, request, project_id):
        import tempfile

        access = api_access(request, project_id)
        spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
        services.project_export_zip(project=access.project, fileobj=spool)
        spool.seek(0)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in access.project.name)[:50] or "project"
        return FileResponse(spool, as_attachment=True, filename=f"{name}.zip", content_type="application/zip")
