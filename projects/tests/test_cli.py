import io
import uuid

import pytest
from django.core.management import CommandError, call_command

from projects.models import Membership, Project
from projects.tests.factories import UserFactory


def test_project_create_prints_the_new_project_id(db):
    UserFactory(username="olga")
    out = io.StringIO()
    call_command("project", "create", "--name", "Birds", "--owner", "olga", "--task", "multi_label", stdout=out)
    project_id = uuid.UUID(out.getvalue().strip())
    project = Project.objects.get(pk=project_id)
    assert project.task == "multi_label"
    assert Membership.objects.get(project=project).user.username == "olga"


def test_project_create_rejects_an_unknown_owner(db):
    with pytest.raises(CommandError, match="No user named"):
        call_command("project", "create", "--name", "Birds", "--owner", "ghost")
    assert not Project.objects.exists()


def test_bootstrap_creates_the_first_admin_from_the_environment(db, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("PICTOR_ADMIN_PASSWORD", "first-admin-pass-123")
    monkeypatch.setenv("PICTOR_ADMIN_USERNAME", "root")
    call_command("bootstrap", stdout=io.StringIO())
    admin = get_user_model().objects.get(username="root")
    assert admin.is_superuser and admin.check_password("first-admin-pass-123")
    call_command("bootstrap", stdout=io.StringIO())  # idempotent: no second admin, no error
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_it_gives_the_first_admin_a_random_password_without_a_terminal(db, monkeypatch, settings, tmp_path):
    from django.contrib.auth import get_user_model

    monkeypatch.delenv("PICTOR_ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal
    settings.DATA_DIR = tmp_path
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    saved = tmp_path / "admin_password"
    assert str(saved) in out.getvalue()
    assert saved.stat().st_mode & 0o777 == 0o600
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(saved.read_text().strip())
