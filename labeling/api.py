"""REST API for labels and samples (shared/API.md).

Each view validates its input with the serializers of labeling/serializers.py, calls a service or a
selector, and renders with an output serializer; the schema is generated from the same classes.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema_view
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError, Pagination, error_body
from labeling import selectors, services
from labeling import serializers as io
from labeling.hooks import label_notes
from labeling.images import HTTP_STATUS
from labeling.models import Sample
from labeling.parsers import VideoParser
from projects.api_auth import api_access
from projects.roles import Role
from training.serializers import PredictionField


def upload_items(request: Request) -> list[services.IngestItem]:
    """The request's images as ingest items (validated by labeling.serializers)."""
    return [services.IngestItem(**item) for item in io.uploaded_files(request)]


def ingest_response(request: Request, report: services.IngestReport) -> Response:
    """201 when all went in, 207 when mixed, the error's own status when every file failed."""
    context = {"request": request}
    failed = [r for r in report.results if not r.ok]
    if not failed:
        return Response(
            io.SamplesCreatedSerializer({"samples": report.results}, context=context).data,
            status=status.HTTP_201_CREATED,
        )
    if len(failed) < len(report.results):
        return Response(
            io.SamplesCreatedSerializer({"samples": report.results}, context=context).data,
            status=status.HTTP_207_MULTI_STATUS,
        )
    codes = {r.error_code for r in failed}
    code = codes.pop() if len(codes) == 1 else "invalid"
    message = failed[0].error_message if len(failed) == 1 else f"None of the {len(failed)} files was accepted."
    body = io.UploadFailedSerializer(
        {"error": error_body(code, message)["error"], "samples": report.results}, context=context
    ).data
    return Response(body, status=HTTP_STATUS.get(code, 400))


class LabelListView(APIView):
    parser_classes = [JSONParser]

    @doc.endpoint(
        "labels_list",
        tag="labels",
        parameters=[doc.PROJECT],
        summary="The project's labels",
        responses={200: io.LabelListSerializer, **doc.errors()},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        labels = list(selectors.label_list(project=access.project))
        notes = label_notes(project=access.project, names=[label.name for label in labels])
        rows = [{"id": label.id, "name": label.name, **notes.get(label.name, {"imagenet": None})} for label in labels]
        return Response(io.LabelListSerializer({"results": rows}).data)

    @doc.endpoint(
        "labels_create",
        tag="labels",
        parameters=[doc.PROJECT],
        summary="Create a label (labeler and up, as on the labels page and by uploading with new names)",
        request=io.LabelCreateSerializer,
        responses={
            201: io.LabelSerializer,
            **doc.errors(400, 409, 415, r409="`conflict`: a label with that name exists."),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=services.LABEL_CREATE_ROLE)
        form = io.LabelCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            label = services.label_create(project=access.project, name=form.validated_data["name"])
        except services.Conflict as exc:
            raise ApiError("conflict", str(exc), 409) from None
        return Response(io.LabelSerializer(label).data, status=201)


class SampleListView(APIView):
    parser_classes = [JSONParser, MultiPartParser, VideoParser]

    @doc.endpoint(
        "samples_list",
        tag="samples",
        parameters=[doc.PROJECT, io.SampleFilterSerializer],
        summary="The project's samples, newest first, a page at a time",
        responses={200: io.SamplePageSerializer, **doc.errors(400)},
    )
    def get(self, request, project_id):
        access = api_access(request, project_id)
        query = io.SampleFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = selectors.sample_list(
            project=access.project,
            labeled=query.validated_data["labeled"],
            label=services.clean_text(query.validated_data["label"]) or None,
            video=query.validated_data.get("video"),
        )
        if query.validated_data.get("page") is not None:  # the contract's page numbers (an offset)
            paginator = Pagination()
            page = paginator.paginate_queryset(qs, request, view=self)
            data = io.SampleSerializer(page, many=True, context={"request": request}).data
            return paginator.get_paginated_response(data)
        try:
            page = selectors.sample_page(
                project=access.project,
                labeled=query.validated_data["labeled"],
                label=services.clean_text(query.validated_data["label"]) or None,
                video=query.validated_data.get("video"),
                cursor=query.validated_data.get("cursor"),
                size=query.validated_data.get("page_size") or Pagination.page_size,
            )
        except selectors.BadCursor as exc:
            raise ApiError("invalid", str(exc), 400, fields={"cursor": [str(exc)]}) from None

        def link(cursor):
            if cursor is None:
                return None
            params = request.query_params.copy()
            params["cursor"] = cursor
            return request.build_absolute_uri(request.path) + "?" + params.urlencode()

        body = {
            "count": page.count,
            "next": link(page.next_cursor),
            "previous": link(page.previous_cursor),
            "results": io.SampleSerializer(page.items, many=True, context={"request": request}).data,
        }
        return Response(body)

    @doc.endpoint(
        "samples_create",
        tag="samples",
        parameters=[doc.PROJECT, io.UploadFilterSerializer],
        summary="Upload images (labeler and up): multipart `file` parts, or JSON with base64 data",
        description="Labels that don't exist yet are created. A file already in the project comes back with its "
        "existing id and `duplicate: true` (its labels are updated if labels were sent). A bad file in a batch "
        "fails only itself: 207 when the batch is mixed. A zip's folder names become labels. A video (MP4, MOV, "
        "WebM, MKV; one per request, as a `file` part or a raw `video/*` body) gives its frames sampled at `?fps=` as "
        'samples with `"source": "video"` and `"video": {"sha256", "time_ms"}`; the labels sent apply to every frame.',
        request=io.UPLOAD_REQUEST,
        examples=doc.IMAGE_EXAMPLES,
        responses={
            201: io.SamplesCreatedSerializer,
            207: OpenApiResponse(io.SamplesCreatedSerializer, description="Some files failed, some went in."),
            **doc.image_errors(failed=io.UploadFailedSerializer),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        query = io.UploadFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        items = upload_items(request)
        source = Sample.Source.API if access.api_key is not None else Sample.Source.UPLOAD
        report = services.samples_ingest(
            project=access.project, items=items, user=access.user, source=source, fps=query.validated_data["fps"]
        )
        return ingest_response(request, report)


def _sample_or_404(access, sample_id) -> Sample:
    sample = selectors.sample_get(project=access.project, sample_id=sample_id)
    if sample is None:
        raise ApiError("not_found", "No such sample in this project.", 404)
    return sample


class SampleDetailSerializer(io.SampleSerializer):
    prediction = PredictionField(allow_null=True, help_text="The deployed model's answer; null when none is deployed.")


class SampleDetailView(APIView):
    @doc.endpoint(
        "sample_retrieve",
        tag="samples",
        parameters=[doc.PROJECT, doc.SAMPLE],
        summary="One sample, with the deployed model's prediction",
        responses={200: SampleDetailSerializer, **doc.errors()},
    )
    def get(self, request, project_id, sample_id):
        from labeling.hooks import prediction_for

        access = api_access(request, project_id)
        sample = _sample_or_404(access, sample_id)
        sample.prediction = prediction_for(sample=sample)
        return Response(SampleDetailSerializer(sample, context={"request": request}).data)

    @doc.endpoint(
        "sample_delete",
        tag="samples",
        parameters=[doc.PROJECT, doc.SAMPLE],
        summary="Delete a sample (labeler and up)",
        responses={204: doc.NO_CONTENT, **doc.errors()},
    )
    def delete(self, request, project_id, sample_id):
        access = api_access(request, project_id, minimum=Role.LABELER)
        services.sample_delete(sample=_sample_or_404(access, sample_id))
        return Response(status=204)


class SampleLabelsView(APIView):
    parser_classes = [JSONParser]

    @doc.endpoint(
        "sample_labels_update",
        tag="samples",
        parameters=[doc.PROJECT, doc.SAMPLE],
        summary="Set a sample's labels (labeler and up)",
        request=io.SampleLabelsSerializer,
        responses={200: io.SampleSerializer, **doc.errors(400, 415)},
    )
    def put(self, request, project_id, sample_id):
        from labeling.models import LabelEvent

        access = api_access(request, project_id, minimum=Role.LABELER)
        sample = _sample_or_404(access, sample_id)
        form = io.SampleLabelsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        via = LabelEvent.Via.API if access.api_key is not None else LabelEvent.Via.WEB
        try:
            sample = services.sample_labels_set(
                sample=sample, names=form.validated_data["labels"], user=access.user, via=via
            )
        except ValidationError as exc:
            raise ApiError("invalid", " ".join(exc.messages), 400) from None
        sample = selectors.sample_get(project=access.project, sample_id=sample.pk)
        return Response(io.SampleSerializer(sample, context={"request": request}).data)


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


@extend_schema_view(
    get=doc.endpoint(
        "sample_image",
        tag="samples",
        parameters=[doc.PROJECT, doc.SAMPLE],
        summary="The sample's original image file",
        responses={**doc.binary("image/*", "The file as uploaded (its own image type)."), **doc.errors()},
    )
)
class SampleImageView(_SampleFileView):
    field = "image_name"


@extend_schema_view(
    get=doc.endpoint(
        "sample_thumbnail",
        tag="samples",
        parameters=[doc.PROJECT, doc.SAMPLE],
        summary="The sample's thumbnail (WebP)",
        responses={**doc.binary("image/webp", "A small WebP image."), **doc.errors()},
    )
)
class SampleThumbnailView(_SampleFileView):
    field = "thumbnail_name"


class SampleNextView(APIView):
    """The samples the active learner wants labeled next, leased to the caller so teammates get others."""

    @doc.endpoint(
        "samples_next",
        tag="samples",
        parameters=[doc.PROJECT, io.NextFilterSerializer],
        summary="The unlabeled samples the active learner wants labeled next (labeler and up)",
        description="They are leased to the caller for a while, so teammates get others.",
        responses={200: io.NextSamplesSerializer, **doc.errors(400)},
    )
    def get(self, request, project_id):
        from labeling import queue
        from labeling.hooks import suggestions_for

        access = api_access(request, project_id, minimum=Role.LABELER)
        query = io.NextFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        holder = (
            queue.holder_for_key(access.api_key) if access.api_key is not None else queue.holder_for_user(request.user)
        )
        items = queue.queue_claim(project=access.project, holder=holder, count=query.validated_data["count"])
        suggestions = suggestions_for(project=access.project, samples=[i.sample for i in items])
        for item in items:
            item.suggestion = suggestions.get(item.sample.pk)
        return Response(io.NextSamplesSerializer({"results": items}, context={"request": request}).data)


class ProjectExportView(APIView):
    """GET .../export: the dataset as a zip (spooled to disk past 64 MB, streamed back)."""

    @doc.endpoint(
        "project_export",
        tag="projects",
        parameters=[doc.PROJECT],
        summary="The dataset as a zip: a folder per label (multi-label: labels.csv) plus samples.csv",
        responses={**doc.binary("application/zip", "A zip file."), **doc.errors()},
    )
    def get(self, request, project_id):
        import tempfile

        access = api_access(request, project_id)
        spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
        services.project_export_zip(project=access.project, fileobj=spool)
        spool.seek(0)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in access.project.name)[:50] or "project"
        return FileResponse(spool, as_attachment=True, filename=f"{name}.zip", content_type="application/zip")
