"""POST .../invoke and the built-in ImageNet labels (shared/API.md), validated and rendered by
inference/serializers.py, the same classes the schema is generated from."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError
from inference import serializers as io
from inference import services
from labeling import videos
from labeling.images import HTTP_STATUS, ImageError
from labeling.parsers import VideoParser
from projects.api_auth import api_access


def _items(request) -> list[services.InvokeItem | services.VideoItem]:
    return [
        services.VideoItem(filename=name, source=data)
        if isinstance(data, videos.VideoSource)
        else services.InvokeItem(filename=name, data=data)
        for name, data in io.invoke_files(request)
    ]


def _answer(items: list[services.InvokeItem], bodies: dict, *, failed_serializer, batch_serializer) -> Response:
    """One image: its answer (or its error). Several: answers in order, 207 when some failed."""
    pairs = [(item, bodies.get(id(item))) for item in items]
    if len(items) == 1:
        item, body = pairs[0]
        if item.error is not None:
            return Response(
                {"error": {"code": item.error.code, "message": item.error.message}}, status=item.error.http_status
            )
        return Response(io.render_answer(body))
    failed = [i for i in items if i.error is not None]
    if not failed:
        return Response(batch_serializer({"results": pairs}).data)
    if len(failed) < len(items):
        return Response(batch_serializer({"results": pairs}).data, status=207)
    codes = {i.error.code for i in failed}
    code = codes.pop() if len(codes) == 1 else "invalid_image"
    error = {"code": code, "message": f"None of the {len(items)} images could be read."}
    return Response(failed_serializer({"error": error, "results": pairs}).data, status=HTTP_STATUS.get(code, 400))


class InvokeView(APIView):
    # The key is read with the project's deployed version id, in one query (ProjectKeyAuthentication).
    key_lookup = staticmethod(services.invoke_key_from_secret)
    parser_classes = [JSONParser, MultiPartParser, VideoParser]

    @doc.endpoint(
        "invoke",
        tag="invoke",
        parameters=[doc.PROJECT, io.InvokeFilterSerializer],
        summary="Classify images with the deployed model (or the one named by ?model=)",
        description='One image (multipart `file`, or JSON `{"data"}`) answers with its result object; several '
        '(repeated `file` parts, or JSON `{"items": [...]}`) answer `{"results": [...]}` in order, 207 '
        "when some images failed. Single-label results carry `label`/`confidence`, multi-label ones `present`; "
        "`?format=series` wraps each label as an entry of the engine output format. A video (MP4, MOV, WebM, MKV; one "
        "per request, as a `file` part, base64 data or a raw `video/*` body) has its frames sampled at `?fps=` and "
        'classified: it answers `{"frames": [...]}`, or with `?format=series` one entry per label segment with real '
        "`startTimeMs`/`stopTimeMs`. Not a decodable video: 400 `invalid_video`; over the byte, duration, pixel or "
        "frame limits (PICTOR_VIDEO_MAX_*): 413 `too_large`.",
        request=io.INVOKE_REQUEST,
        examples=doc.IMAGE_EXAMPLES,
        responses={
            200: io.INVOKE_OK,
            207: OpenApiResponse(io.InvokeBatchResultSerializer, description="Some images failed, some were answered."),
            **doc.image_errors(
                409,
                failed=io.InvokeFailedSerializer,
                r409="`no_model`: nothing is deployed yet and no model was named.",
            ),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, invoke=True)
        project = access.project
        query = io.InvokeFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        if q["capture"]:
            services.capture_check(access=access)
        items = _items(request)
        clips = [i for i in items if isinstance(i, services.VideoItem)]
        if clips and q["explain"]:
            raise ApiError("invalid", "?explain=true takes images, not videos.", 400, {"explain": ["images only"]})
        try:
            services.invoke(
                project=project,
                items=[i for i in items if not isinstance(i, services.VideoItem)],
                model_id=str(q["model"]) if q["model"] else None,
                top_k=q["top_k"],
                capture=q["capture"],
                explain=q["explain"],
                user=access.user,
                deployed_id=getattr(request.auth, "deployed_model_id", services.UNREAD),
            )
            for clip in clips:
                services.video_invoke(
                    project=project,
                    item=clip,
                    model_id=str(q["model"]) if q["model"] else None,
                    fps=q["fps"],
                    capture=q["capture"],
                    pretrained=(q["pretrained"] or 0) if q["format"] == "series" else 0,
                    user=access.user,
                )
        except services.NoModel:
            raise ApiError(
                "no_model",
                "No model is deployed in this project yet; train and deploy one, or name one with ?model=.",
                409,
            ) from None
        except services.UnknownModel:
            raise ApiError("not_found", "No such model in this project.", 404) from None

        def image_uri(sample_id) -> str:
            return request.build_absolute_uri(
                reverse("api_sample_image", kwargs={"project_id": project.pk, "sample_id": sample_id})
            )

        valid = [i for i in items if i.error is None and not isinstance(i, services.VideoItem)]
        pretrained_labels = {}
        if q["format"] == "series" and q["pretrained"] and valid:
            for item, top in zip(valid, services.pretrained_topk([i.image.image for i in valid], q["pretrained"])):
                pretrained_labels[id(item)] = top

        bodies = {}
        for clip in clips:
            if clip.error is None:
                bodies[id(clip)] = services.video_answer(
                    project=project, item=clip, format=q["format"], top_k=q["top_k"], build_uri=image_uri
                )
        for item in valid:
            if q["format"] == "frames":  # a still image is one frame, at 0 ms
                bodies[id(item)] = {"frames": [{"timeMs": 0, **item.result}]}
                continue
            if q["format"] != "series":
                bodies[id(item)] = item.result
                continue
            uri = (
                image_uri(item.result["sample_id"])
                if "sample_id" in item.result
                else services.stored_uri(project=project, sha256=item.image.sha256, build_uri=image_uri)
            )
            body = services.series(
                project=project, result=item.result, uri=uri, pretrained=pretrained_labels.get(id(item))
            )
            for key in ("sample_id", "explanation"):
                if key in item.result:
                    body[key] = item.result[key]
            bodies[id(item)] = body
        return _answer(
            items, bodies, failed_serializer=io.InvokeFailedSerializer, batch_serializer=io.InvokeBatchResultSerializer
        )


class PretrainedInvokeView(APIView):
    """ImageNet-1k labels from the built-in backbone; any valid key or signed-in user."""

    parser_classes = [JSONParser, MultiPartParser]

    @doc.endpoint(
        "pretrained_invoke",
        tag="invoke",
        parameters=[io.PretrainedFilterSerializer],
        summary="ImageNet-1k labels from the built-in backbone (any valid key or signed-in user)",
        request=io.PRETRAINED_REQUEST,
        examples=doc.IMAGE_EXAMPLES,
        responses={
            200: io.PRETRAINED_OK,
            207: OpenApiResponse(io.PretrainedBatchSerializer, description="Some images failed."),
            **doc.image_errors(failed=io.PretrainedFailedSerializer),
        },
    )
    def post(self, request):
        query = io.PretrainedFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        items = _items(request)
        for clip in [i for i in items if isinstance(i, services.VideoItem)]:
            clip.error = ImageError(
                "unsupported_media_type", "The ImageNet endpoint takes images; a project's invoke takes videos."
            )
        services.items_validate([i for i in items if not isinstance(i, services.VideoItem)])
        valid = [i for i in items if i.error is None]
        tops = services.pretrained_topk([i.image.image for i in valid], query.validated_data["top_k"]) if valid else []
        bodies = {}
        for item, top in zip(valid, tops):
            labels = [{"label": name, "confidence": round(float(p), 6), "index": idx} for idx, name, p in top]
            bodies[id(item)] = {
                "label": labels[0]["label"],
                "confidence": labels[0]["confidence"],
                "labels": labels,
                "model": {"id": "imagenet", "version": "efficientnet-lite0"},
            }
        return _answer(
            items,
            bodies,
            failed_serializer=io.PretrainedFailedSerializer,
            batch_serializer=io.PretrainedBatchSerializer,
        )
