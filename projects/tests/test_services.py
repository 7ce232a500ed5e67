from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from projects import services
from projects.models import Invite, Membership, Project
from projects.tests.factories import UserFactory


@pytest.fixture
def owner(db):
    return UserFactory(username="olga")


def test_project_create_makes_the_creator_owner(owner):
    project = services.project_create(name="  Birds ", owner=owner, task="multi_label")
    assert project.name == "Birds" and project.is_multi_label
    assert Membership.objects.get(project=project).role == "owner"


@pytest.mark.parametrize("name,task", [("", "single_label"), ("x" * 121, "single_label"), ("ok", "regression")])
def test_it_rejects_bad_project_fields(owner, name, task):
    with pytest.raises(ValidationError):
        services.project_create(name=name, owner=owner, task=task)
    assert not Project.objects.exists()


def test_project_delete_needs_the_exact_name(owner):
    project = services.project_create(name="Birds", owner=owner)
    with pytest.raises(ValidationError):
        services.project_delete(project=project, confirmation="birds")
    services.project_delete(project=project, confirmation="Birds")
    assert Project.objects.get().deleting  # the rows go in the background
    assert services.project_purge(project_id=project.pk) == 0
    assert not Project.objects.exists() and not Membership.objects.exists()


def test_it_deletes_a_project_in_the_background_in_chunks_and_hides_it_meanwhile(
    team, monkeypatch, django_capture_on_commit_callbacks
):
    from unittest import mock

    from django.http import Http404

    from labeling.models import Sample
    from labeling.tests.factories import make_sample
    from projects.access import project_access_get

    project = team.project
    for i in range(5):
        make_sample(project, seed=i)
    monkeypatch.setattr(services, "_PURGE_CHUNK", 2)
    with mock.patch("config.dispatch.enqueue") as enqueue:
        with django_capture_on_commit_callbacks(execute=True):
            services.project_delete(project=project, confirmation=project.name)
    enqueue.assert_called_once_with(services.PURGE, args=[str(project.pk)])
    assert Sample.objects.filter(project=project).count() == 5  # nothing deleted in the request
    with pytest.raises(Http404):
        project_access_get(user=team.user("owner"), project_id=project.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.project_purge(project_id=project.pk) == 5
    assert not Project.objects.filter(pk=project.pk).exists() and not Sample.objects.exists()
    assert services.project_purge(project_id=project.pk) == 0  # safe to run twice


def test_member_add_by_username_or_email(owner):
    project = services.project_create(name="Birds", owner=owner)
    UserFactory(username="lars", email="Lars@Example.org")
    m = services.member_add(project=project, user_identifier="lars@example.org", role="labeler")
    assert m.user.username == "lars" and m.role == "labeler"
    with pytest.raises(ValidationError, match="already a member"):
        services.member_add(project=project, user_identifier="LARS", role="viewer")
    with pytest.raises(ValidationError, match="No single user"):
        services.member_add(project=project, user_identifier="nobody", role="viewer")
    with pytest.raises(ValidationError):
        services.member_add(project=project, user_identifier="olga", role="god")


def test_the_last_owner_cannot_leave_or_step_down(owner):
    project = services.project_create(name="Birds", owner=owner)
    mine = Membership.objects.get(project=project, user=owner)
    with pytest.raises(ValidationError, match="last owner"):
        services.member_remove(membership=mine)
    with pytest.raises(ValidationError, match="last owner"):
        services.member_role_change(membership=mine, role="admin")
    second = services.member_add(project=project, user_identifier=UserFactory().username, role="admin")
    services.member_role_change(membership=second, role="owner")
    services.member_role_change(membership=mine, role="viewer")
    assert Membership.objects.get(pk=mine.pk).role == "viewer"
    with pytest.raises(ValidationError, match="last owner"):
        services.member_remove(membership=Membership.objects.get(pk=second.pk))


def test_invite_links_are_single_use(owner):
    project = services.project_create(name="Birds", owner=owner)
    invite, token = services.invite_create(project=project, created_by=owner, role="labeler")
    assert token not in invite.token_hash
    first, second = UserFactory(), UserFactory()
    assert services.invite_accept(token=token, user=first).role == "labeler"
    with pytest.raises(ValidationError, match="already been used"):
        services.invite_accept(token=token, user=second)
    assert not Membership.objects.filter(user=second).exists()


def test_invite_links_expire_and_can_be_revoked(owner):
    project = services.project_create(name="Birds", owner=owner)
    invite, token = services.invite_create(project=project, created_by=owner, role="viewer")
    Invite.objects.filter(pk=invite.pk).update(expires=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="expired"):
        services.invite_accept(token=token, user=UserFactory())
    invite, token = services.invite_create(project=project, created_by=owner, role="viewer")
    services.invite_revoke(invite=invite)
    with pytest.raises(ValidationError, match="not valid"):
        services.invite_accept(token=token, user=UserFactory())
    with pytest.raises(ValidationError, match="not valid"):
        services.invite_accept(token="made-up", user=UserFactory())
