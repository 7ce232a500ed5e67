from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from projects import selectors, services
from projects.access import ProjectAccess, project_access_get
from projects.forms import (
    InviteForm,
    MemberAddForm,
    ProjectCreateForm,
    ProjectDeleteForm,
    ProjectSettingsForm,
    RoleForm,
    SignupForm,
)
from projects.models import Invite, Membership
from projects.roles import DESCRIPTIONS, Role


def error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def project_view(minimum: str = Role.VIEWER, methods: tuple[str, ...] = ("GET",)):
    """Wrap a view taking (request, access, ...): sign-in, allowed methods, then the access check."""

    def decorator(view):
        @login_required
        @require_http_methods(list(methods))
        @wraps(view)
        def wrapper(request: HttpRequest, project_id, *args, **kwargs):
            access = project_access_get(user=request.user, project_id=project_id, minimum=minimum)
            return view(request, access, *args, **kwargs)

        return wrapper

    return decorator


@login_required
@require_http_methods(["GET", "HEAD"])
def dashboard(request: HttpRequest) -> HttpResponse:
    summaries = selectors.project_summaries_for_user(user=request.user)
    return render(request, "projects/dashboard.html", {"summaries": summaries})


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(owner=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, error_text(exc))
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project_detail", project_id=project.pk)
    return render(request, "projects/project_create.html", {"form": form})


@project_view()
def project_detail(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    from labeling.selectors import labeler_counts

    summary = selectors.project_summary(project=access.project, role=access.role)
    context = {"access": access, "summary": summary, "labelers": labeler_counts(project=access.project)}
    return render(request, "projects/project_detail.html", context)


@project_view(Role.ADMIN, methods=("GET", "POST"))
def project_settings(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    project = access.project
    initial = {
        "name": project.name,
        "description": project.description,
        "queue_strategy": project.queue_strategy,
        "capture": project.capture,
        "capture_threshold": project.capture_threshold,
    }
    form = ProjectSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, error_text(exc))
        else:
            messages.success(request, "Settings saved.")
            return redirect("project_settings", project_id=project.pk)
    return render(request, "projects/project_settings.html", {"access": access, "form": form})


@project_view(Role.OWNER, methods=("GET", "POST"))
def project_delete(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = ProjectDeleteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_delete(project=access.project, confirmation=form.cleaned_data["confirmation"])
        except ValidationError as exc:
            form.add_error("confirmation", error_text(exc))
        else:
            messages.success(request, f"Project “{access.project.name}” is being deleted in the background.")
            return redirect("dashboard")
    return render(request, "projects/project_delete.html", {"access": access, "form": form})


def _members_context(access: ProjectAccess, **extra) -> dict:
    return {
        "access": access,
        "members": selectors.member_list(project=access.project),
        "invites": selectors.invite_list_open(project=access.project) if access.can(Role.OWNER) else [],
        "roles": Role.choices,
        "role_descriptions": [(Role(r).label, d) for r, d in DESCRIPTIONS.items()],
        "add_form": extra.pop("add_form", MemberAddForm()),
        "invite_form": InviteForm(),
        **extra,
    }


def _members_response(request: HttpRequest, access: ProjectAccess, **extra) -> HttpResponse:
    template = "projects/members.html"
    if request.htmx:
        template += "#members-panel"
    return render(request, template, _members_context(access, **extra))


@project_view()
def members(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    return _members_response(request, access)


@project_view(Role.OWNER, methods=("POST",))
def member_add(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership = services.member_add(
                project=access.project,
                user_identifier=form.cleaned_data["user"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as exc:
            form.add_error("user", error_text(exc))
        else:
            messages.success(request, f"{membership.user.get_username()} added as {membership.role}.")
            if not request.htmx:
                return redirect("members", project_id=access.project.pk)
            form = MemberAddForm()
    response = _members_response(request, access, add_form=form)
    # htmx swaps only 2xx answers, so it gets the form with its errors as 200.
    if form.errors and not request.htmx:
        response.status_code = 400
    return response


def _membership(access: ProjectAccess, membership_id) -> Membership:
    return get_object_or_404(Membership, pk=membership_id, project=access.project)


@project_view(Role.OWNER, methods=("POST",))
def member_role(request: HttpRequest, access: ProjectAccess, membership_id) -> HttpResponse:
    membership = _membership(access, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
    else:
        try:
            services.member_role_change(membership=membership, role=form.cleaned_data["role"])
        except ValidationError as exc:
            messages.error(request, error_text(exc))
        else:
            messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
    if request.htmx:
        return _members_response(request, access)
    return redirect("members", project_id=access.project.pk)


@project_view(Role.OWNER, methods=("POST",))
def member_remove(request: HttpRequest, access: ProjectAccess, membership_id) -> HttpResponse:
    membership = _membership(access, membership_id)
    try:
        services.member_remove(membership=membership)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{membership.user.get_username()} removed.")
        if membership.user_id == request.user.pk:
            return redirect("dashboard")
    if request.htmx:
        return _members_response(request, access)
    return redirect("members", project_id=access.project.pk)


@project_view(methods=("POST",))
def project_leave(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    try:
        services.member_remove(membership=access.membership)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
        return redirect("members", project_id=access.project.pk)
    messages.success(request, f"You left “{access.project.name}”.")
    return redirect("dashboard")


@project_view(Role.OWNER, methods=("POST",))
def invite_create(request: HttpRequest, access: ProjectAccess) -> HttpResponse:
    form = InviteForm(request.POST)
    new_link = None
    if form.is_valid():
        invite, token = services.invite_create(
            project=access.project, created_by=request.user, role=form.cleaned_data["role"]
        )
        new_link = request.build_absolute_uri(reverse("invite_accept", kwargs={"token": token}))
    else:
        messages.error(request, "Choose a valid role for the invite.")
    # The link is shown once, now: only its hash is stored, so it cannot be shown again later.
    return _members_response(request, access, new_link=new_link)


@project_view(Role.OWNER, methods=("POST",))
def invite_revoke(request: HttpRequest, access: ProjectAccess, invite_id) -> HttpResponse:
    invite = get_object_or_404(Invite, pk=invite_id, project=access.project)
    services.invite_revoke(invite=invite)
    messages.success(request, "Invite link revoked.")
    if request.htmx:
        return _members_response(request, access)
    return redirect("members", project_id=access.project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = services.invite_get_valid(token=token)
    except ValidationError as exc:
        return render(request, "projects/invite_accept.html", {"error": error_text(exc)}, status=410)
    if request.method == "POST":
        try:
            membership = services.invite_accept(token=token, user=request.user)
        except ValidationError as exc:
            return render(request, "projects/invite_accept.html", {"error": error_text(exc)}, status=410)
        messages.success(request, f"You joined “{membership.project.name}” as {membership.role}.")
        return redirect("project_detail", project_id=membership.project.pk)
    return render(request, "projects/invite_accept.html", {"invite": invite})


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.PICTOR_ALLOW_SIGNUP:
        raise Http404("Sign-up is turned off on this server.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})
