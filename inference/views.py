"""The project's API page: keys (create, show once, revoke), usage, ready-made snippets."""

from __future__ import annotations


from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from projects import keys
from projects.access import ProjectAccess
from projects.models import ProjectAPIKey
from projects.roles import Role
from projects.views import error_text, project_view


def _video_limits() -> dict:
    from labeling.services import video_limits

    v = video_limits()
    return {
        "max_fps": f"{v.max_fps:g}",
        "max_mb": v.max_bytes // (1024 * 1024),
        "max_seconds": f"{v.max_seconds:g}",
        "max_frames": v.max_frames,
        "max_megapixels": f"{v.max_pixels / 1e6:.1f}",
    }


def _context(request: HttpRequest, access: ProjectAccess, **extra) -> dict:
    project = access.project
    base = request.build_absolute_uri("/").rstrip("/")
    return {
        "access": access,
        "project": project,
        "keys": keys.api_key_list(project=project) if access.can(Role.ADMIN) else [],
        "usage": keys.api_usage_by_day(project=project),
        "base_url": base,
        "invoke_url": f"{base}/api/v1/projects/{project.pk}/invoke",
        "docs_url": reverse("api_docs"),
        "video": _video_limits(),
        "deployed": _deployed(project),
        **extra,
    }


def _deployed(project):
    from training.models import ModelVersion

    return ModelVersion.objects.filter(project=project, deployed=True).only("version", "mode").first()


@project_view()
def api_page(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return render(request, "inference/api.html", _context(request, access))


@project_view(Role.ADMIN, methods=("POST",))
def api_key_create(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        key_obj, key = keys.api_key_create(
            project=access.project,
            name=request.POST.get("name", ""),
            scope=request.POST.get("scope", ""),
            created_by=request.user,
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
        return redirect("api_page", project_id=access.project.pk)
    # The secret is rendered once, in this response; only its hash is stored.
    return render(request, "inference/api.html", _context(request, access, new_key=key, new_key_obj=key_obj))


@project_view(Role.ADMIN, methods=("POST",))
def api_key_revoke(request: HttpRequest, access: ProjectAccess, prefix: str) -> HttpResponse:
    key = ProjectAPIKey.objects.filter(project=access.project, prefix=prefix).first()
    if key is None:
        raise Http404("No such key.")
    keys.api_key_revoke(key=key)
    messages.success(request, f"Key {key.name} ({key.prefix}) revoked; it stops working now.")
    return redirect("api_page", project_id=access.project.pk)


def _try_error(code: str, message: str, status: int) -> tuple[dict, int]:
    return {"error": {"code": code, "message": message}}, status


def _try_answer(request: HttpRequest, access: ProjectAccess) -> tuple[dict, int]:
    """One image through the same invoke service as POST .../invoke (nothing stored, no key)."""
    from django.conf import settings

    from inference import services
    from training.serializers import render_result

    upload = request.FILES.get("file")
    if upload is None:
        return _try_error("invalid", "Choose an image to try.", 400)
    if upload.size > settings.PICTOR_MAX_UPLOAD_BYTES:
        return _try_error("too_large", f"The image is over {settings.PICTOR_MAX_UPLOAD_BYTES} bytes.", 413)
    item = services.InvokeItem(filename=upload.name or "image", data=upload.read())
    try:
        services.invoke(project=access.project, items=[item], top_k=5, user=request.user)
    except services.NoModel:
        return _try_error(
            "no_model", "Nothing is deployed yet: label a few images, or name labels after ImageNet classes.", 409
        )
    if item.error is not None:
        return _try_error(item.error.code, item.error.message, item.error.http_status)
    return render_result(item.result), 200


@project_view(methods=("POST",))
def api_try(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    """The API page's try-it panel: a signed-in member's session stands in for a key. JSON for
    pictor.js; without JavaScript the form posts here and the page shows the answer."""
    body, status = _try_answer(request, access)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(body, status=status)
    extra = {"try_error": body["error"]} if "error" in body else {"try_result": body}
    return render(request, "inference/api.html", _context(request, access, **extra), status=status)


@project_view(methods=("POST",))
def sample_explain(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    """Heat map of where the deployed model looked, for the sample page (JSON for its script)."""
    from django.core.files.storage import default_storage

    from inference import services
    from labeling.selectors import sample_get

    sample = sample_get(project=access.project, sample_id=sample_id)
    if sample is None:
        raise Http404("No such sample.")
    with default_storage.open(sample.image_name, "rb") as f:
        item = services.InvokeItem(filename=sample.filename, data=f.read())
    try:
        services.invoke(project=access.project, items=[item], explain=True)
    except services.NoModel:
        return JsonResponse({"error": {"code": "no_model", "message": "Deploy a model first."}}, status=409)
    if item.error is not None:
        return JsonResponse(
            {"error": {"code": item.error.code, "message": item.error.message}}, status=item.error.http_status
        )
    return JsonResponse(item.result)
