import re

from django.urls import reverse

from projects.models import Membership, Project
from projects.tests.factories import PASSWORD, UserFactory


def test_login_page_and_sign_in(client, db):
    UserFactory(username="ana")
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.post(reverse("login"), {"username": "ana", "password": "wrong"}).status_code == 200


def test_dashboard_shows_an_empty_state_that_says_what_to_do(client_for, db):
    page = client_for(UserFactory()).get(reverse("dashboard")).content.decode()
    assert 'id="empty-state"' in page and "Create a project" in page


def test_creating_a_project_lands_on_it_and_lists_it(client_for, db):
    user = UserFactory()
    c = client_for(user)
    response = c.post(reverse("project_create"), {"name": "Ants", "task": "single_label"})
    project = Project.objects.get()
    assert response["Location"] == reverse("project_detail", kwargs={"project_id": project.pk})
    assert str(project.pk) in response["Location"]  # the public UUID, never an integer
    page = c.get(reverse("dashboard")).content.decode()
    assert "Ants" in page and 'id="project-table"' in page


def test_it_shows_form_errors_instead_of_failing(client_for, db):
    c = client_for(UserFactory())
    response = c.post(reverse("project_create"), {"name": "", "task": "nonsense"})
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not Project.objects.exists()


def test_member_add_over_htmx_returns_the_panel_partial(team, client_for):
    c = client_for(team.user("owner"))
    url = reverse("member_add", kwargs={"project_id": team.project.pk})
    response = c.post(url, {"user": "outsider", "role": "viewer"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="members-panel">') and "<html" not in body
    assert "member-outsider" in body
    response = c.post(url, {"user": "ghost", "role": "viewer"}, HTTP_HX_REQUEST="true")
    assert "No single user" in response.content.decode()


def test_invite_link_is_shown_once_and_joins_the_project(team, client_for):
    owner = client_for(team.user("owner"))
    page = owner.post(
        reverse("invite_create", kwargs={"project_id": team.project.pk}), {"role": "labeler"}
    ).content.decode()
    link = re.search(r'value="(http://testserver/invite/[^"]+)"', page).group(1)
    newcomer = UserFactory(username="newcomer")
    c = client_for(newcomer)
    path = link.replace("http://testserver", "")
    assert b"Join" in c.get(path).content
    response = c.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer, project=team.project).role == "labeler"
    assert client_for(UserFactory()).post(path).status_code == 410


def test_delete_needs_typed_confirmation(team, client_for):
    c = client_for(team.user("owner"))
    url = reverse("project_delete", kwargs={"project_id": team.project.pk})
    assert c.post(url, {"confirmation": "nope"}).status_code == 200
    assert Project.objects.filter(pk=team.project.pk).exists()
    assert c.post(url, {"confirmation": team.project.name}).status_code == 302
    assert Project.objects.get(pk=team.project.pk).deleting
    page = c.get(reverse("dashboard")).content.decode()
    assert "being deleted" in page  # the list says so, without a link into it
    assert c.get(reverse("project_detail", kwargs={"project_id": team.project.pk})).status_code == 404


def test_signup_is_off_by_default_and_works_when_on(client, db, settings):
    assert client.get(reverse("signup")).status_code == 404
    settings.PICTOR_ALLOW_SIGNUP = True
    response = client.post(
        reverse("signup"),
        {"username": "zoe", "email": "", "password1": "a-long-pass-phrase-77", "password2": "a-long-pass-phrase-77"},
    )
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200


def test_password_change(client_for, db):
    user = UserFactory()
    c = client_for(user)
    response = c.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "another-long-phrase-88",
            "new_password2": "another-long-phrase-88",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-long-phrase-88")
