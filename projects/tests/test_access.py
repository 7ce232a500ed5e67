"""Role x view matrix: every project URL answered for owner, admin, labeler, viewer, outsider, anonymous."""

import pytest
from django.urls import reverse

from projects.models import Invite, Membership
from projects.services import invite_create

ROLES = ["owner", "admin", "labeler", "viewer"]
RANK = {r: i for i, r in enumerate(reversed(ROLES))}


def _kwargs(team, extra: str | None):
    kwargs = {"project_id": team.project.pk}
    if extra == "membership":
        kwargs["membership_id"] = Membership.objects.get(project=team.project, user=team.user("viewer")).pk
    if extra == "sample":
        from labeling.tests.factories import make_sample

        kwargs["sample_id"] = make_sample(team.project, seed=99).pk
    if extra == "label":
        from labeling.services import label_create

        kwargs["label_id"] = label_create(project=team.project, name="wasp").pk
    if extra in ("model", "model_plot"):
        from training.tests.factories import make_model

        kwargs["model_id"] = make_model(team.project).pk
        if extra == "model_plot":
            kwargs["kind"] = "pr"
    if extra == "job":
        from training.models import TrainingJob

        kwargs["job_id"] = TrainingJob.objects.create(project=team.project, mode="full").pk
    if extra == "back":
        kwargs["back"] = 1
    if extra == "invite":
        invite, _ = invite_create(project=team.project, created_by=team.user("owner"), role="viewer")
        kwargs["invite_id"] = invite.pk
    return kwargs


# (url name, method, data, minimum role, extra kwargs)
ROUTES = [
    ("project_detail", "get", None, "viewer", None),
    ("members", "get", None, "viewer", None),
    ("project_settings", "get", None, "admin", None),
    (
        "project_settings",
        "post",
        {
            "name": "Renamed",
            "description": "",
            "queue_strategy": "random",
            "capture": "off",
            "capture_threshold": "0.6",
        },
        "admin",
        None,
    ),
    ("project_delete", "get", None, "owner", None),
    ("project_delete", "post", {"confirmation": "Ants and bees"}, "owner", None),
    ("member_add", "post", {"user": "outsider", "role": "viewer"}, "owner", None),
    ("member_role", "post", {"role": "labeler"}, "owner", "membership"),
    ("member_remove", "post", {}, "owner", "membership"),
    ("invite_create", "post", {"role": "labeler"}, "owner", None),
    ("invite_revoke", "post", {}, "owner", "invite"),
    ("project_leave", "post", {}, "viewer", None),
    ("sample_browser", "get", None, "viewer", None),
    ("upload", "get", None, "labeler", None),
    ("sample_detail", "get", None, "viewer", "sample"),
    ("sample_labels", "post", {"label": ["ants"]}, "labeler", "sample"),
    ("sample_delete", "post", {}, "labeler", "sample"),
    ("samples_bulk_label", "post", {"label": "ants"}, "labeler", None),
    ("label_session", "get", None, "labeler", None),
    ("label_submit", "post", {"label": "ants"}, "labeler", "sample"),
    ("label_skip", "post", {}, "labeler", "sample"),
    ("label_undo", "post", {}, "labeler", None),
    ("label_history", "get", None, "labeler", "back"),
    ("label_schema", "get", None, "viewer", None),
    ("label_add", "post", {"name": "hornet"}, "labeler", None),
    ("label_edit", "post", {"name": "wasps", "color": "#aa0000", "shortcut": ""}, "admin", "label"),
    ("label_merge", "post", {"target": ""}, "admin", "label"),
    ("label_delete", "post", {}, "admin", "label"),
    ("embedding_status", "get", None, "viewer", None),
    ("models_page", "get", None, "viewer", None),
    ("model_detail", "get", None, "viewer", "model"),
    ("model_plot", "get", None, "viewer", "model_plot"),
    ("model_download", "get", None, "viewer", "model"),
    ("model_deploy", "post", {}, "admin", "model"),
    ("model_delete", "post", {}, "admin", "model"),
    ("training_start", "post", {"mode": "quick"}, "admin", None),
    ("job_status", "get", None, "viewer", "job"),
    ("training_cancel", "post", {}, "admin", "job"),
    ("review_page", "get", None, "admin", None),
    ("review_decide", "post", {"sample": "", "decision": "confirm"}, "admin", None),
]


@pytest.mark.parametrize("name,method,data,minimum,extra", ROUTES, ids=[f"{r[1]}-{r[0]}" for r in ROUTES])
@pytest.mark.parametrize("who", ROLES + ["outsider", "anonymous"])
def test_role_matrix(team, client_for, who, name, method, data, minimum, extra):
    url = reverse(name, kwargs=_kwargs(team, extra))
    user = None if who == "anonymous" else team.user(who)
    response = getattr(client_for(user), method)(url, data or {})
    if who == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    elif who == "outsider":
        assert response.status_code == 404
    elif RANK[who] < RANK[minimum]:
        assert response.status_code == 403
    elif name == "review_decide":
        assert response.status_code == 404  # allowed in, but the (empty) sample does not exist
    elif name == "project_leave" and who == "owner":
        # The only owner may not leave: refused with a message, still a member.
        assert response.status_code == 302
        assert Membership.objects.filter(project=team.project, user=user).exists()
    else:
        assert response.status_code in (200, 302), response.content[:300]


def test_it_answers_404_for_unknown_and_malformed_project_ids(team, client_for):
    c = client_for(team.user("owner"))
    assert c.get("/projects/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert c.get("/projects/42/").status_code == 404


def test_it_does_not_reveal_other_projects_on_the_dashboard(team, client_for):
    page = client_for(team.user("outsider")).get(reverse("dashboard")).content.decode()
    assert "Someone else&#x27;s" in page or "Someone else's" in page
    assert "Ants and bees" not in page


def test_membership_of_another_project_does_not_leak_into_member_actions(team, client_for):
    other = Membership.objects.exclude(project=team.project).first()
    url = reverse("member_remove", kwargs={"project_id": team.project.pk, "membership_id": other.pk})
    assert client_for(team.user("owner")).post(url).status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()
    invite, _ = invite_create(project=other.project, created_by=other.user, role="viewer")
    url = reverse("invite_revoke", kwargs={"project_id": team.project.pk, "invite_id": invite.pk})
    assert client_for(team.user("owner")).post(url).status_code == 404
    assert not Invite.objects.get(pk=invite.pk).revoked
