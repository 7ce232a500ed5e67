"""Model pages: versions side by side, training with a live progress bar, evaluation, review queue."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from labeling import services as labeling_services
from labeling.models import LabelEvent
from projects.access import ProjectAccess
from projects.roles import Role
from projects.views import error_text, project_view
from training import pipeline, selectors, services
from training.ml import metrics as ml_metrics
from training.models import ModelVersion, TrainingJob


def _model(access: ProjectAccess, model_id) -> ModelVersion:
    model = selectors.model_get(project=access.project, model_id=model_id)
    if model is None:
        raise Http404("No such model.")
    return model


def _job(access: ProjectAccess, job_id) -> TrainingJob:
    job = selectors.training_job_get(project=access.project, job_id=job_id)
    if job is None:
        raise Http404("No such training.")
    return job


@project_view()
def models_page(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    models = list(selectors.model_list(project=access.project))
    jobs = list(selectors.training_job_list(project=access.project).exclude(mode="quick")[:10])
    quick_jobs = list(selectors.training_job_list(project=access.project).filter(mode="quick")[:1])
    deployed = next((m for m in models if m.deployed), None)
    # the zero-shot model answers because no quick model beat it (training.quick._deploy_automatic)
    zero_shot_kept = (
        deployed is not None
        and deployed.mode == "zero_shot"
        and services.automatic_choice_open(deployed=deployed)
        and any(m.mode == "quick" for m in models)
    )
    return render(
        request,
        "training/models.html",
        {
            "access": access,
            "project": access.project,
            "models": models,
            "jobs": jobs,
            "last_quick": quick_jobs[0] if quick_jobs else None,
            "zero_shot_kept": deployed if zero_shot_kept else None,
            "curve": selectors.learning_curve(project=access.project),
        },
    )


@project_view()
def job_status(request: HttpRequest, access: ProjectAccess, job_id) -> HttpResponse:
    job = _job(access, job_id)
    response = render(request, "training/job_status.html", {"access": access, "project": access.project, "job": job})
    if request.htmx and job.status in TrainingJob.FINAL:
        response.status_code = 286  # stop polling; the final state is swapped in
    return response


@project_view(Role.ADMIN, methods=("POST",))
def training_start(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    mode = request.POST.get("mode")
    try:
        pipeline.training_start(project=access.project, mode=mode, user=request.user)
    except services.TrainingConflict as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, "Training queued." if mode == "full" else "Quick retrain queued.")
    return redirect("models_page", project_id=access.project.pk)


@project_view(Role.ADMIN, methods=("POST",))
def training_cancel(request: HttpRequest, access: ProjectAccess, job_id) -> HttpResponse:
    job = services.training_job_cancel(job=_job(access, job_id))
    if request.htmx:
        return render(request, "training/job_status.html", {"access": access, "project": access.project, "job": job})
    messages.success(request, "Cancel requested.")
    return redirect("models_page", project_id=access.project.pk)


@project_view(Role.ADMIN, methods=("POST",))
def model_deploy(request: HttpRequest, access: ProjectAccess, model_id) -> HttpResponse:
    model = _model(access, model_id)
    try:
        # the page's confirmation (data-confirm in pictor.js) is the human override
        model = services.model_deploy(model=model, force=request.POST.get("confirm_worse") == "1")
    except services.WorseThanQuick as exc:
        messages.error(request, f"{exc} Deploy it again with confirmation to override.")
        return redirect("models_page", project_id=access.project.pk)
    messages.success(request, f"Version {model.version} is now deployed.")
    return redirect("models_page", project_id=access.project.pk)


@project_view(Role.ADMIN, methods=("POST",))
def model_delete(request: HttpRequest, access: ProjectAccess, model_id) -> HttpResponse:
    model = _model(access, model_id)
    try:
        services.model_delete(model=model)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Version {model.version} deleted.")
    return redirect("models_page", project_id=access.project.pk)


@project_view()
def model_detail(request: HttpRequest, access: ProjectAccess, model_id) -> HttpResponse:
    model = _model(access, model_id)
    cell = None
    true, predicted = request.GET.get("true"), request.GET.get("predicted")
    if true and predicted:
        cell = {
            "true": true,
            "predicted": predicted,
            "samples": selectors.model_cell_samples(model=model, true=true, predicted=predicted),
        }
    context = {
        "access": access,
        "project": access.project,
        "model": model,
        "m": model.metrics or {},
        "confusion": selectors.model_confusion_rows(model=model),
        "cell": cell,
        "representation_rows": _representation_rows(model.metrics or {}),
        "recipe_rows": _recipe_rows(model.metrics or {}),
    }
    template = "training/model_detail.html"
    if request.htmx and cell is not None:
        template += "#cell-samples"
    return render(request, template, context)


def _recipe_rows(m: dict) -> list[dict]:
    """The full training's candidates, as tried (each with its best blend on validation)."""
    rows = []
    for c in (m.get("recipe") or {}).get("candidates") or []:
        blocks = c.get("blocks")
        if blocks is None:
            what = "all recipes"
        elif blocks == 0:
            what = "linear probe"
        else:
            what = f"last {blocks} stage{'s' if blocks > 1 else ''}, lr {c.get('lr'):g}"
        rows.append({**c, "name": f"{c.get('backbone')} · {what}"})
    return rows


def _representation_rows(m: dict) -> list[dict]:
    """Best CV row per representation the quick model tried, best first (why the winner won)."""
    best: dict[str, dict] = {}
    for row in m.get("cv_table") or []:
        key = row.get("feature_key")
        if key and (key not in best or row["log_loss"] < best[key]["log_loss"]):
            best[key] = {"key": key, "log_loss": row["log_loss"], "accuracy": row.get("accuracy")}
    return sorted(best.values(), key=lambda r: r["log_loss"])


@project_view()
def model_plot(request: HttpRequest, access: ProjectAccess, model_id, kind: str) -> HttpResponse:
    model = _model(access, model_id)
    m = model.metrics or {}
    if kind == "confusion":
        png = ml_metrics.confusion_matrix_png(m.get("confusion_matrix") or {"labels": [], "matrix": []})
    elif kind == "pr":
        png = ml_metrics.pr_curves_png(m.get("pr_curves") or {})
    else:
        raise Http404("No such plot.")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@project_view()
def model_download(request: HttpRequest, access: ProjectAccess, model_id) -> HttpResponse:
    from training.export import model_onnx_name

    model = _model(access, model_id)
    name = model_onnx_name(model)
    filename = f"{access.project.name[:40].replace(' ', '-')}-v{model.version}.onnx"
    return FileResponse(
        default_storage.open(name, "rb"), as_attachment=True, filename=filename, content_type="application/octet-stream"
    )


@project_view(Role.ADMIN)
def review_page(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return render(
        request,
        "training/review.html",
        {
            "access": access,
            "project": access.project,
            "items": selectors.review_items(project=access.project),
        },
    )


@project_view(Role.ADMIN, methods=("POST",))
def review_decide(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    from labeling.selectors import sample_get, sample_label_names

    sample = sample_get(project=access.project, sample_id=request.POST.get("sample"))
    if sample is None:
        raise Http404("No such sample.")
    if request.POST.get("decision") == "fix" and request.POST.get("label"):
        try:
            labeling_services.sample_labels_set(
                sample=sample, names=[request.POST["label"]], user=request.user, via=LabelEvent.Via.REVIEW_FIX
            )
        except ValidationError as exc:
            messages.error(request, error_text(exc))
        else:
            messages.success(request, f"Relabeled as “{request.POST['label']}”.")
    else:
        names = sample_label_names(sample)
        LabelEvent.objects.create(
            sample=sample, user=request.user, old=names, new=names, via=LabelEvent.Via.REVIEW_CONFIRM
        )
        messages.success(request, "Label confirmed.")
    return redirect("review_page", project_id=access.project.pk)
