from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from labeling import selectors, services
from labeling.forms import SampleFilterForm
from projects.access import ProjectAccess
from projects.roles import Role
from projects.views import error_text, project_view

PAGE_SIZE = 60


def _sample_or_404(access: ProjectAccess, sample_id):
    sample = selectors.sample_get(project=access.project, sample_id=sample_id)
    if sample is None:
        raise Http404("No such sample.")
    return sample


@project_view()
def sample_browser(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = SampleFilterForm(request.GET or None)
    label = form.cleaned_data.get("label") if form.is_valid() else ""
    video = (form.cleaned_data.get("video") if form.is_valid() else "") or None
    try:
        page = selectors.sample_page(
            project=access.project,
            labeled=form.labeled_value(),
            label=label or None,
            video=video,
            cursor=request.GET.get("cursor") or None,
            size=PAGE_SIZE,
        )
    except selectors.BadCursor:
        page = selectors.sample_page(
            project=access.project, labeled=form.labeled_value(), label=label or None, video=video, size=PAGE_SIZE
        )
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("cursor", None)
    context = {
        "access": access,
        "project": access.project,
        "form": form,
        "page": page,
        "labels": selectors.label_list(project=access.project),
        "query": query.urlencode(),
    }
    template = "labeling/samples.html"
    if request.htmx and request.htmx.target == "sample-grid":
        template += "#sample-grid"
    return render(request, template, context)


@project_view()
def sample_detail(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    sample = _sample_or_404(access, sample_id)
    from labeling.hooks import sample_extras

    context = {
        "access": access,
        "project": access.project,
        "sample": sample,
        "sample_labels": selectors.sample_label_names(sample),
        "labels": selectors.label_list(project=access.project),
        "history": selectors.sample_history(sample=sample),
        **sample_extras(sample=sample),
    }
    return render(request, "labeling/sample_detail.html", context)


@project_view(Role.LABELER, methods=("POST",))
def sample_labels(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    sample = _sample_or_404(access, sample_id)
    try:
        names = [n for n in request.POST.getlist("label") if n.strip()]
        services.sample_labels_set(sample=sample, names=names, user=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, "Labels saved.")
    return redirect("sample_detail", project_id=access.project.pk, sample_id=sample.pk)


@project_view(Role.LABELER, methods=("POST",))
def sample_delete(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    sample = _sample_or_404(access, sample_id)
    services.sample_delete(sample=sample)
    messages.success(request, "Sample deleted.")
    return redirect("sample_browser", project_id=access.project.pk)


@project_view(Role.LABELER)
def upload(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    from labeling.services import image_limits

    from labeling.services import video_limits

    limits, video = image_limits(), video_limits()
    context = {
        "access": access,
        "project": access.project,
        "max_mb": limits.max_bytes // (1024 * 1024),
        "video_max_mb": video.max_bytes // (1024 * 1024),
        "video_max_seconds": f"{video.max_seconds:g}",
        "video_max_fps": f"{video.max_fps:g}",
        "video_max_frames": video.max_frames,
    }
    return render(request, "labeling/upload.html", context)


@project_view(Role.LABELER, methods=("POST",))
def samples_bulk_label(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    ids = request.POST.getlist("sample")
    name = (request.POST.get("label") or "").strip()
    mode = "remove" if request.POST.get("mode") == "remove" else "add"
    if not ids or not name:
        messages.error(request, "Select samples and a label first.")
    else:
        try:
            count = services.samples_label_bulk(
                project=access.project, sample_ids=ids, label_name=name, user=request.user, mode=mode
            )
        except ValidationError as exc:
            messages.error(request, error_text(exc))
        else:
            verb = "removed from" if mode == "remove" else "applied to"
            messages.success(request, f"“{name}” {verb} {count} sample(s).")
    back = request.POST.get("next") or ""
    if back.startswith("/projects/"):
        return redirect(back)
    return redirect("sample_browser", project_id=access.project.pk)
