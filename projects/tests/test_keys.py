"""projects.keys: the key lookup every API request makes (one plain SELECT, config.sql) and its refusals."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects import keys, services
from projects.models import Project, ProjectAPIKey
from projects.tests.factories import UserFactory


@pytest.fixture
def project(db):
    return services.project_create(owner=UserFactory(), name="Cats", task="single_label")


def test_it_reads_the_key_and_its_project_exactly_as_the_orm_does_in_one_query(project):
    key_obj, secret = keys.api_key_create(project=project, name="app", scope="invoke")
    Project.objects.filter(pk=project.pk).update(description="a, b; 'c'")
    with CaptureQueriesContext(connection) as q:
        found = keys.api_key_from_secret(secret=secret)
        found_project = found.project  # loaded by the same query
    assert len(q.captured_queries) == 1
    orm = ProjectAPIKey.objects.select_related("project").get(pk=key_obj.pk)
    for field in ProjectAPIKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(orm, field.attname), field.name
        assert type(getattr(found, field.attname)) is type(getattr(orm, field.attname)), field.name
    for field in Project._meta.concrete_fields:
        assert getattr(found_project, field.attname) == getattr(orm.project, field.attname), field.name
        assert type(getattr(found_project, field.attname)) is type(getattr(orm.project, field.attname)), field.name
    assert not found._state.adding and found._state.db == "default"
    found.name = "renamed"
    found.save(update_fields=["name"])  # a normal model instance: it saves
    assert ProjectAPIKey.objects.get(pk=key_obj.pk).name == "renamed"


def test_it_refuses_a_wrong_secret_a_revoked_key_an_expired_key_and_an_unknown_prefix(project):
    key_obj, secret = keys.api_key_create(project=project, name="app", scope="full")
    prefix = secret.partition(".")[0]
    for bad in (prefix + ".wrong", "nope.nope", "", "."):
        with pytest.raises(ProjectAPIKey.DoesNotExist):
            keys.api_key_from_secret(secret=bad)
    assert keys.api_key_from_secret(secret=secret).pk == key_obj.pk
    ProjectAPIKey.objects.filter(pk=key_obj.pk).update(expiry_date=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ProjectAPIKey.DoesNotExist):
        keys.api_key_from_secret(secret=secret)
    ProjectAPIKey.objects.filter(pk=key_obj.pk).update(expiry_date=timezone.now() + timedelta(days=1))
    assert keys.api_key_from_secret(secret=secret).pk == key_obj.pk
    keys.api_key_revoke(key=key_obj)
    with pytest.raises(ProjectAPIKey.DoesNotExist):
        keys.api_key_from_secret(secret=secret)
