"""POST .../invoke and the built-in ImageNet labels (shared/API.md)."""

from __future__ import annotations

from django.urls import reverse
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config import schema as doc
from config.api import ApiError, error_body
from inference import services
from labeling.api import upload_items
from labeling.imaging import HTTP_STATUS
from projects.api_auth import api_access


def _int_param(request, name: str, *, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ApiError("invalid", f"{name} must be a whole number from {lo} to {hi}.", 400, {name: [f"{lo}..{hi}"]})
    return value


def _flag(request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ApiError("invalid", f"{name} must be true or false.", 400, {name: ["true or false"]})


def _items(request) -> list[services.InvokeItem]:
    return [services.InvokeItem(filename=i.filename, data=i.data) for i in upload_items(request)]


def _answer(items: list[services.InvokeItem], shape) -> Response:
    """One image: its result (or its error). Several: results in order, 207 when some failed."""
    if len(items) == 1:
        item = items[0]
        if item.error is not None:
            return Response(error_body(item.error.code, item.error.message), status=item.error.http_status)
        return Response(shape(item))
    results = []
    for item in items:
        if item.error is not None:
            results.append({**error_body(item.error.code, item.error.message), "filename": item.filename})
        else:
            results.append(shape(item))
    failed = [i for i in items if i.error is not None]
    if not failed:
        return Response({"results": results})
    if len(failed) < len(items):
        return Response({"results": results}, status=207)
    codes = {i.error.code for i in failed}
    code = codes.pop() if len(codes) == 1 else "invalid_image"
    return Response({**error_body(code, f"None of the {len(items)} images could be read."), "results": results},
                    status=HTTP_STATUS.get(code, 400))


class InvokeView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @doc.endpoint(
        "invoke", tag="invoke", parameters=[doc.PROJECT, *doc.INVOKE_QUERY],
        summary="Classify images with the deployed model (or the one named by ?model=)",
        description="One image (multipart `file`, or JSON `{\"data\"}`) answers with its result object; several "
        "(repeated `file` parts, or JSON `{\"items\": [...]}`) answer `{\"results\": [...]}` in order, 207 "
        "when some images failed. Single-label results carry `label`/`confidence`, multi-label ones `present`; "
        "`?format=series` wraps each label as an entry of the engine output format.",
        request=doc.INVOKE_REQUEST, examples=doc.IMAGE_EXAMPLES,
        responses={
            200: doc.INVOKE_OK,
            207: doc.OpenApiResponse(doc.InvokeBatchResultSerializer, description="Some images failed, some were answered."),
            **doc.image_errors(409, r409="`no_model`: nothing is deployed yet and no model was named."),
        },
    )
    def post(self, request, project_id):
        access = api_access(request, project_id, invoke=True)
        project = access.project
        top_k = _int_param(request, "top_k", lo=1, hi=10_000)
        pretrained = _int_param(request, "pretrained", lo=1, hi=20)
        fmt = request.query_params.get("format") or ""
        if fmt not in ("", "json", "series"):
            raise ApiError("invalid", "format must be 'series' (or left out).", 400, {"format": ["series"]})
        capture, explain = _flag(request, "capture"), _flag(request, "explain")
        items = _items(request)
        try:
            services.invoke(
                project=project, items=items, model_id=request.query_params.get("model") or None, top_k=top_k,
                capture=capture, explain=explain, user=access.user,
            )
        except services.NoModel:
            raise ApiError("no_model", "No model is deployed in this project yet; train and deploy one, or name one with ?model=.", 409) from None
        except services.UnknownModel:
            raise ApiError("not_found", "No such model in this project.", 404) from None

        def image_uri(sample_id) -> str:
            return request.build_absolute_uri(
                reverse("api_sample_image", kwargs={"project_id": project.pk, "sample_id": sample_id})
            )

        pretrained_labels = {}
        if fmt == "series" and pretrained:
            valid = [i for i in items if i.error is None]
            for item, top in zip(valid, services.pretrained_topk([i.image.image for i in valid], pretrained)):
                pretrained_labels[id(item)] = top

        def shape(item: services.InvokeItem) -> dict:
            if fmt != "series":
                return item.result
            uri = image_uri(item.result["sample_id"]) if "sample_id" in item.result else services.stored_uri(
                project=project, sha256=item.image.sha256, build_uri=image_uri
            )
            body = services.series(project=project, result=item.result, uri=uri, pretrained=pretrained_labels.get(id(item)))
            for key in ("sample_id", "explanation"):
                if key in item.result:
                    body[key] = item.result[key]
            return body

        return _answer(items, shape)


class PretrainedInvokeView(APIView):
    """ImageNet-1k labels from the built-in backbone; any valid key or signed-in user."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @doc.endpoint(
        "pretrained_invoke", tag="invoke", parameters=doc.PRETRAINED_QUERY,
        summary="ImageNet-1k labels from the built-in backbone (any valid key or signed-in user)",
        request=doc.INVOKE_REQUEST, examples=doc.IMAGE_EXAMPLES,
        responses={
            200: doc.PRETRAINED_OK,
            207: doc.OpenApiResponse(doc.PretrainedBatchSerializer, description="Some images failed."),
            **doc.image_errors(),
        },
    )
    def post(self, request):
        top_k = _int_param(request, "top_k", lo=1, hi=1000) or 5
        items = _items(request)
        services.items_validate(items)
        valid = [i for i in items if i.error is None]
        tops = services.pretrained_topk([i.image.image for i in valid], top_k) if valid else []
        for item, top in zip(valid, tops):
            labels = [{"label": name, "confidence": round(float(p), 6), "index": idx} for idx, name, p in top]
            item.result = {"label": labels[0]["label"], "confidence": labels[0]["confidence"], "labels": labels,
                           "model": {"id": "imagenet", "version": "efficientnet-lite0"}}
        return _answer(items, lambda item: item.result)
