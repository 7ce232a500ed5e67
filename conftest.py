"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from projects.roles import Role

REPO = Path(__file__).resolve().parent


def datasets_dir() -> Path:
    return Path(os.environ.get("PICTOR_DATASETS") or REPO.parent / "shared" / "datasets")


@dataclass
class Team:
    project: object
    users: dict  # role name (and "outsider") -> user

    def user(self, role: str):
        return self.users[role]


@pytest.fixture
def team(db) -> Team:
    """A project with one member of each role, plus an outsider who is a member of another project."""
    from projects.tests.factories import MembershipFactory, ProjectFactory, UserFactory

    project = ProjectFactory(name="Ants and bees")
    users = {}
    for role in (Role.OWNER, Role.ADMIN, Role.LABELER, Role.VIEWER):
        users[str(role)] = MembershipFactory(project=project, role=role, user=UserFactory(username=str(role))).user
    outsider = UserFactory(username="outsider")
    MembershipFactory(user=outsider, role=Role.OWNER, project=ProjectFactory(name="Someone else's"))
    users["outsider"] = outsider
    return Team(project=project, users=users)


@pytest.fixture
def client_for(client):
    """client_for(user) -> a test client signed in as user (None: anonymous)."""

    def make(user):
        from django.test import Client

        c = Client()
        if user is not None:
            c.force_login(user)
        return c

    return make


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = "embedded filesystem" if settings.PICTOR_EMBEDDED else "redis"
    return f"pictor: database={db} broker/cache={broker}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test body failed (the browser fixture saves a screenshot then).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        # CI has every service, the browser and the data sets: a skip there hides a broken setup.
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, which must run everything: {report.longrepr}"
    return report


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Coalescing locks and throttles live in the cache (Redis on CI): no test inherits another's.

    Only our own keys go: the broker shares that Redis database, and a FLUSHDB would also delete
    the queues' bindings, silently dropping tasks that running workers send afterwards.
    """
    from django.conf import settings
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        client = cache._cache.get_client(write=True)
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    else:
        cache.clear()
    import config.dispatch

    config.dispatch._last_failure = 0.0  # a simulated outage in one test must not colour the next
    yield


@pytest.fixture(autouse=True, scope="session")
def _api_responses_conform():
    """Every API response any test receives is validated against the served schema."""
    from tests import conformance

    conformance.install()
    yield


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory):
    """ONNX exports of the backbones happen once per test session, not once per test."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _model_cache(settings, shared_model_cache):
    settings.MODEL_CACHE_DIR = shared_model_cache
