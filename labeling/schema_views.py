"""The label schema page: add, rename, recolour, re-key, merge and delete labels."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from labeling import selectors, services
from labeling.hooks import label_notes
from labeling.models import Label
from projects.access import ProjectAccess, parse_uuid
from projects.roles import Role
from projects.views import error_text, project_view


def _page(request: HttpRequest, access: ProjectAccess, status: int = 200, **extra) -> HttpResponse:
    template = "labeling/labels.html"
    if request.htmx:
        template += "#label-table"
    labels = selectors.label_list(project=access.project)
    notes = label_notes(project=access.project, names=[label.name for label in labels])
    for label in labels:
        label.imagenet = notes.get(label.name, {}).get("imagenet")
    context = {
        "access": access,
        "project": access.project,
        "labels": labels,
        # every name (two at least) means ImageNet classes: a zero-shot model answers before training
        "zero_shot_ready": len(labels) >= 2
        and all(label.imagenet and label.imagenet["own_classes"] for label in labels),
        "unmapped": [label.name for label in labels if not label.imagenet],
        "overlapped": [label.name for label in labels if label.imagenet and not label.imagenet["own_classes"]],
        "can_create_labels": access.can(services.LABEL_CREATE_ROLE),
        **extra,
    }
    return render(request, template, context, status=status)


def _done(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return _page(request, access) if request.htmx else redirect("label_schema", project_id=access.project.pk)


@project_view(Role.VIEWER)
def label_schema(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return _page(request, access)


@project_view(services.LABEL_CREATE_ROLE, methods=("POST",))
def label_add(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        label = services.label_create(project=access.project, name=request.POST.get("name", ""))
    except (ValidationError, services.Conflict) as exc:
        messages.error(request, error_text(exc) if isinstance(exc, ValidationError) else str(exc))
    else:
        messages.success(request, f"Label “{label.name}” added (key {label.shortcut or 'none'}).")
    return _done(request, access)


def _label(access: ProjectAccess, label_id) -> Label:
    return get_object_or_404(Label, pk=label_id, project=access.project)


@project_view(Role.ADMIN, methods=("POST",))
def label_edit(request: HttpRequest, access: ProjectAccess, label_id) -> HttpResponse:
    label = _label(access, label_id)
    try:
        services.label_update(
            label=label,
            name=request.POST.get("name", label.name),
            color=request.POST.get("color", label.color),
            shortcut=request.POST.get("shortcut", label.shortcut),
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Label “{label.name}” saved.")
    return _done(request, access)


@project_view(Role.ADMIN, methods=("POST",))
def label_merge(request: HttpRequest, access: ProjectAccess, label_id) -> HttpResponse:
    source = _label(access, label_id)
    target_id = parse_uuid(request.POST.get("target"))
    target = Label.objects.filter(project=access.project, pk=target_id).first() if target_id else None
    if target is None:
        messages.error(request, "Choose the label to merge into.")
        return _done(request, access)
    try:
        moved = services.label_merge(source=source, target=target, user=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Merged “{source.name}” into “{target.name}”: {moved} sample(s) moved.")
    return _done(request, access)


@project_view(Role.ADMIN, methods=("POST",))
def label_delete(request: HttpRequest, access: ProjectAccess, label_id) -> HttpResponse:
    label = _label(access, label_id)
    affected = services.label_delete(label=label, user=request.user)
    messages.success(request, f"Deleted “{label.name}”; {affected} sample(s) lost that label.")
    return _done(request, access)
