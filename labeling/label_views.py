"""The keyboard-first labeling session (htmx): one image, its labels, the model's suggestion."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from labeling import queue, selectors, services
from labeling.hooks import suggestions_for
from labeling.models import LabelEvent, Sample
from projects.access import ProjectAccess
from projects.roles import Role
from projects.views import error_text, project_view


def _key_order(label) -> tuple:
    """Labels in the order of their keys (1-9, then letters), keyless ones last."""
    keys = services.SHORTCUT_KEYS
    return (keys.index(label.shortcut) if label.shortcut in keys and label.shortcut else len(keys), label.name)


def _context(
    request: HttpRequest,
    access: ProjectAccess,
    *,
    current: Sample | None,
    following: Sample | None = None,
    back: int = 0,
    score: float | None = None,
    error: str | None = None,
) -> dict:
    project = access.project
    suggestion = None
    if current is not None:
        suggestion = suggestions_for(project=project, samples=[current]).get(current.pk)
    current_labels = selectors.sample_label_names(current) if current is not None and back else []
    return {
        "access": access,
        "project": project,
        "current": current,
        "following": following,
        "score": score,
        "back": back,
        "labels": sorted(selectors.label_list(project=project), key=_key_order),
        "current_labels": current_labels,
        "suggestion": suggestion,
        "done_today": queue.done_today(project=project, user=request.user),
        "remaining": queue.remaining_count(project=project),
        "error": error,
    }


def _render(request: HttpRequest, access: ProjectAccess, **kwargs) -> HttpResponse:
    template = "labeling/label.html"
    if request.htmx:
        template += "#labeler"
    return render(request, template, _context(request, access, **kwargs))


def _next(request: HttpRequest, access: ProjectAccess, error: str | None = None) -> HttpResponse:
    items = queue.queue_claim(project=access.project, holder=queue.holder_for_user(request.user), count=2)
    current = items[0] if items else None
    following = items[1].sample if len(items) > 1 else None
    return _render(
        request,
        access,
        current=current.sample if current else None,
        following=following,
        score=current.score if current else None,
        error=error,
    )


def _after_post(request: HttpRequest, access: ProjectAccess, error: str | None = None) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("label_session", project_id=access.project.pk)
    return _next(request, access, error=error)


def _sample(access: ProjectAccess, sample_id) -> Sample:
    sample = selectors.sample_get(project=access.project, sample_id=sample_id)
    if sample is None:
        raise Http404("No such sample.")
    return sample


@project_view(Role.LABELER)
def label_session(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return _next(request, access)


@project_view(Role.LABELER, methods=("POST",))
def label_submit(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    sample = _sample(access, sample_id)
    names = [n for n in request.POST.getlist("label") if n.strip()]
    if not names:
        return _after_post(request, access, error="Choose a label first (or press S to skip).")
    try:
        services.sample_labels_set(sample=sample, names=names, user=request.user, via=LabelEvent.Via.SESSION)
    except ValidationError as exc:
        return _after_post(request, access, error=error_text(exc))
    return _after_post(request, access)


@project_view(Role.LABELER, methods=("POST",))
def label_skip(request: HttpRequest, access: ProjectAccess, sample_id) -> HttpResponse:
    queue.queue_skip(sample=_sample(access, sample_id), holder=queue.holder_for_user(request.user))
    return _after_post(request, access)


@project_view(Role.LABELER, methods=("POST",))
def label_undo(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    sample = services.label_undo(project=access.project, user=request.user)
    if sample is None:
        return _after_post(request, access, error="Nothing to undo.")
    # The undone sample comes back to this labeler first.
    queue.lease_release(sample=sample)
    queue.queue_claim(project=access.project, holder=queue.holder_for_user(request.user), count=1)
    return (
        _render(request, access, current=sample, back=0)
        if request.htmx
        else redirect("label_session", project_id=access.project.pk)
    )


@project_view(Role.LABELER)
def label_history(request: HttpRequest, access: ProjectAccess, back: int) -> HttpResponse:
    """The labeler's back-th most recently labeled sample (1 = the last), to look at or relabel."""
    if back < 1:
        return _next(request, access)
    events = (
        LabelEvent.objects.filter(sample__project=access.project, user=request.user)
        .order_by("-created", "-id")
        .values_list("sample_id", flat=True)
    )
    ordered: list = []
    for sample_id in events[:500]:
        if sample_id not in ordered:
            ordered.append(sample_id)
        if len(ordered) >= back:
            break
    if len(ordered) < back:
        return _next(request, access, error="That is as far back as your history goes.")
    return _render(request, access, current=_sample(access, ordered[back - 1]), back=back)
