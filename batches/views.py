"""The Batches page: start a batch, watch it (htmx polling until 286), steer it, browse its results
as a thumbnail grid filtered by label and confidence, and send items to labeling. Every view goes
through project_view (projects/access.py) and calls the same services as the API."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from batches import forms, selectors, services
from batches.models import Batch
from projects.access import ProjectAccess
from projects.roles import Role
from projects.views import project_view

GRID_PAGE = 48
THUMB_SIDE = 160


def _shown(batch: Batch) -> Batch:
    """The figures the status partial shows, computed once by the selectors."""
    batch.ips = selectors.items_per_second(batch)
    batch.eta = selectors.eta_seconds(batch)
    batch.final = batch.status in Batch.FINAL
    return batch


def _batch(access: ProjectAccess, batch_id) -> Batch:
    batch = selectors.batch_get(project=access.project, batch_id=batch_id)
    if batch is None:
        raise Http404("No such batch.")
    return _shown(batch)


def _context(access: ProjectAccess, **extra) -> dict:
    return {"access": access, "project": access.project, "can_steer": access.can(Role.ADMIN), **extra}


@project_view()
def batches_page(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    batches = [_shown(b) for b in selectors.batch_list(project=access.project)[:50]]
    return render(
        request,
        "batches/batches.html",
        _context(access, batches=batches, form=forms.BatchStartForm(), max_fps=f"{settings.PICTOR_VIDEO_MAX_FPS:g}"),
    )


@project_view(Role.ADMIN, methods=("POST",))
def batch_start(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    from inference.services import NoModel

    form = forms.BatchStartForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(
            request, "Video frames per second: a number above 0." if "fps" in form.errors else "Choose a source."
        )
        return redirect("batches_page", project_id=access.project.pk)
    data = form.cleaned_data
    try:
        if data["kind"] == "upload":
            if not data["file"]:
                raise services.BatchInvalid("Choose a zip or tar file to upload.")
            upload = services.batch_upload_create(project=access.project, fileobj=data["file"], user=request.user)
            source = {"kind": "upload", "upload_id": str(upload.pk)}
        elif data["kind"] == "folder":
            source = {"kind": "folder", "path": data["path"]}
        else:
            source = {"kind": "s3", "uri": data["uri"]}
        batch = services.batch_start(project=access.project, source=source, fps=data["fps"] or 1.0, user=request.user)
    except NoModel:
        messages.error(request, "No model is deployed yet: train and deploy one first.")
    except services.BatchInvalid as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Batch started.")
        return redirect("batch_detail", project_id=access.project.pk, batch_id=batch.pk)
    return redirect("batches_page", project_id=access.project.pk)


@project_view()
def batch_status(request: HttpRequest, access: ProjectAccess, batch_id) -> HttpResponse:
    batch = _batch(access, batch_id)
    response = render(request, "batches/batches.html#batch-status", _context(access, batch=batch))
    if request.htmx and batch.status in Batch.FINAL:
        response.status_code = 286  # stop polling; the final state is swapped in
    return response


_ACTIONS = {"pause": services.batch_pause, "resume": services.batch_resume, "cancel": services.batch_cancel}


@project_view(Role.ADMIN, methods=("POST",))
def batch_control(request: HttpRequest, access: ProjectAccess, batch_id, action: str) -> HttpResponse:
    if action not in _ACTIONS:
        raise Http404("No such action.")
    batch = _batch(access, batch_id)
    try:
        batch = _shown(_ACTIONS[action](batch=batch))
    except services.BatchConflict as exc:
        messages.error(request, str(exc))
    if request.htmx:
        return render(request, "batches/batches.html#batch-status", _context(access, batch=batch))
    return redirect("batch_detail", project_id=access.project.pk, batch_id=batch.pk)


@project_view()
def batch_detail(request: HttpRequest, access: ProjectAccess, batch_id) -> HttpResponse:
    batch = _batch(access, batch_id)
    form = forms.ResultsFilterForm(request.GET or None)
    q = form.cleaned_data if form.is_valid() else {}
    qs = selectors.results_filter(
        batch=batch,
        label=q.get("label") or None,
        min_confidence=q.get("min_confidence"),
        max_confidence=q.get("max_confidence"),
    )
    page = Paginator(qs, GRID_PAGE).get_page(q.get("page") or 1)
    records = [selectors.result_record(batch=batch, result=r) for r in page]
    query = urlencode({k: v for k, v in q.items() if k != "page" and v not in (None, "")})
    api = reverse("api_batch_results", kwargs={"project_id": access.project.pk, "batch_id": batch.pk})
    downloads = [(fmt, f"{api}?format={fmt}" + (f"&{query}" if query else "")) for fmt in ("csv", "jsonl", "series")]
    context = _context(
        access,
        batch=batch,
        form=form,
        page=page,
        records=records,
        query=query,
        labels=selectors.result_labels(batch=batch),
        downloads=downloads,
    )
    partial = request.htmx and request.htmx.target == "sample-grid"
    return render(request, "batches/batch_detail.html" + ("#result-grid" if partial else ""), context)


@project_view()
def batch_thumbnail(request: HttpRequest, access: ProjectAccess, batch_id) -> HttpResponse:
    """A small WebP of one item, read again from the batch's source (bounded: one item, 160 px)."""
    from labeling import images
    from labeling.services import image_limits

    batch = _batch(access, batch_id)
    result = selectors.result_get(batch=batch, key=request.GET.get("key", ""))
    data = services.result_bytes(batch=batch, result=result) if result is not None else None
    if data is None:
        raise Http404("No such item.")
    picture = services.video_poster(data=data, filename=result.key)  # a video: its first frame
    if picture is None:
        try:
            picture = images.validate_image(data, limits=image_limits(), filename=result.key).image
        except images.UploadError:
            raise Http404("The item is not a readable image.") from None
    response = HttpResponse(images.make_thumbnail(picture, size=THUMB_SIDE), content_type="image/webp")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@project_view(Role.LABELER, methods=("POST",))
def batch_to_samples(request: HttpRequest, access: ProjectAccess, batch_id) -> HttpResponse:
    batch = _batch(access, batch_id)
    keys = [k for k in request.POST.getlist("key") if k][:10_000]
    form = forms.ToSamplesForm(request.POST)
    threshold = form.cleaned_data.get("max_confidence") if form.is_valid() else None
    if keys:
        count = services.to_samples_start(batch=batch, keys=keys, max_confidence=None, user=request.user)
    elif threshold is not None:
        count = services.to_samples_start(batch=batch, keys=None, max_confidence=threshold, user=request.user)
    else:
        messages.error(request, "Select items, or give a confidence below which to send them.")
        return redirect("batch_detail", project_id=access.project.pk, batch_id=batch.pk)
    messages.success(request, f"{count} item{'s' if count != 1 else ''} on the way to labeling.")
    back = request.POST.get("next", "")
    if back.startswith("/") and not back.startswith("//"):
        return redirect(back)
    return redirect("batch_detail", project_id=access.project.pk, batch_id=batch.pk)
