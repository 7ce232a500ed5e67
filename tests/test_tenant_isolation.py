"""Tenant isolation: every URL of the project x every kind of caller, against an explicit table.

The URL list is walked from the resolver, so a new URL pattern fails `test_every_url_is_in_the_table`
until it is added to ROUTES below. Each (route, method, caller) case runs on fresh fixtures (so the
destructive endpoints cannot spoil later cases) and checks:

* the status class from the table (allowed: the route's `ok` statuses; 401; 403; 404; UI anonymous:
  302 to /accounts/login/), and the API error envelope on API denials;
* zero leaks: no response to an outsider, a foreign project's key or an anonymous caller contains
  project A's id, name, or the ids of its samples, labels, models, jobs or invites;
* zero effects: a denied request leaves project A exactly as it was.

`test_foreign_object_ids_are_404` then swaps in project B's object ids under project A's URL (IDOR).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from labeling.models import LabelEvent, Sample
from labeling.services import label_create
from labeling.tests.factories import jpeg_bytes, make_sample
from projects.keys import api_key_create
from projects.models import Invite, Membership, Project, ProjectAPIKey
from projects.roles import Role
from projects.services import invite_create
from projects.tests.factories import MembershipFactory, UserFactory
from training.models import ModelVersion, TrainingJob
from training.tests.factories import make_model

ROLES = ("owner", "admin", "labeler", "viewer")
CALLERS = ROLES + ("outsider", "anonymous", "key_b_full", "key_a_invoke", "key_a_full")
RANK = {"viewer": 0, "labeler": 1, "admin": 2, "owner": 3}
# Callers who must learn nothing about project A.
STRANGERS = ("outsider", "anonymous", "key_b_full")

# Not part of the table: Django admin, the auth views (login, logout, password, signup), static and
# media files, and the OpenAPI schema/docs (project-independent, documented elsewhere).
SKIP_PREFIXES = ("admin/", "accounts/", "static/", "media/", "api/v1/schema", "api/v1/docs")


def _b64(seed: int) -> str:
    return base64.b64encode(jpeg_bytes(seed, size=(16, 16))).decode()


@dataclass(frozen=True)
class Route:
    """One URL name and method.

    kind: "ui"       project page: login required, then membership (outsider 404, role too low 403)
          "api"      project API: key or session; foreign key / outsider 404, wrong scope 403
          "ui_login" page that needs only a signed-in user (no project in the URL)
          "ui_token" the invite link: the token is the capability, any signed-in user
          "api_any"  API that needs any valid key or session, no project
    """

    name: str
    method: str
    kind: str
    minimum: str = "viewer"
    ok: tuple = (200,)
    invoke: bool = False  # API: reachable with an invoke-scoped key
    data: Callable | dict | None = None  # dict, or callable(side) -> dict
    query: str = ""

    @property
    def id(self) -> str:
        return f"{self.method}-{self.name}"


def _d(value):
    return value if callable(value) else (lambda side: value)


ROUTES = [
    # --- projects (UI)
    Route("dashboard", "get", "ui_login"),
    Route("project_create", "get", "ui_login"),
    Route(
        "project_create",
        "post",
        "ui_login",
        ok=(302,),
        data={"name": "Fresh", "description": "", "task": "single_label"},
    ),
    Route("project_detail", "get", "ui"),
    Route("project_settings", "get", "ui", "admin"),
    Route(
        "project_settings",
        "post",
        "ui",
        "admin",
        ok=(200, 302),
        data={
            "name": "Renamed",
            "description": "",
            "queue_strategy": "random",
            "capture": "off",
            "capture_threshold": "0.6",
        },
    ),
    Route("project_delete", "get", "ui", "owner"),
    Route("project_delete", "post", "ui", "owner", ok=(302,), data={"confirmation": "Alpha hive project"}),
    Route("members", "get", "ui"),
    Route("member_add", "post", "ui", "owner", ok=(200, 302), data={"user": "b_viewer", "role": "viewer"}),
    Route("member_role", "post", "ui", "owner", ok=(200, 302), data={"role": "labeler"}),
    Route("member_remove", "post", "ui", "owner", ok=(200, 302)),
    Route("project_leave", "post", "ui", ok=(302,)),
    Route("invite_create", "post", "ui", "owner", ok=(200, 302), data={"role": "labeler"}),
    Route("invite_revoke", "post", "ui", "owner", ok=(200, 302)),
    Route("invite_accept", "get", "ui_token"),
    Route("invite_accept", "post", "ui_token", ok=(302,)),
    # --- labeling (UI)
    Route("sample_browser", "get", "ui"),
    Route("sample_detail", "get", "ui"),
    Route("sample_labels", "post", "ui", "labeler", ok=(302,), data={"label": ["ants"]}),
    Route("sample_delete", "post", "ui", "labeler", ok=(302,)),
    Route("upload", "get", "ui", "labeler"),
    Route(
        "samples_bulk_label",
        "post",
        "ui",
        "labeler",
        ok=(302,),
        data=lambda s: {"sample": [str(s.sample.pk)], "label": "ants"},
    ),
    Route("label_session", "get", "ui", "labeler"),
    Route("label_undo", "post", "ui", "labeler", ok=(200, 302)),
    Route("label_history", "get", "ui", "labeler"),
    Route("label_submit", "post", "ui", "labeler", ok=(200, 302), data={"label": "ants"}),
    Route("label_skip", "post", "ui", "labeler", ok=(200, 302)),
    Route("label_schema", "get", "ui"),
    Route("label_add", "post", "ui", "labeler", ok=(200, 302), data={"name": "hornet"}),
    Route(
        "label_edit", "post", "ui", "admin", ok=(200, 302), data={"name": "wasps", "color": "#aa0000", "shortcut": ""}
    ),
    Route("label_merge", "post", "ui", "admin", ok=(200, 302), data=lambda s: {"target": str(s.label2.pk)}),
    Route("label_delete", "post", "ui", "admin", ok=(200, 302)),
    # --- training (UI)
    Route("embedding_status", "get", "ui"),
    Route("models_page", "get", "ui"),
    Route("model_detail", "get", "ui"),
    Route("model_deploy", "post", "ui", "admin", ok=(302,)),
    Route("model_delete", "post", "ui", "admin", ok=(302,)),
    Route("model_download", "get", "ui"),
    Route("model_plot", "get", "ui"),
    Route("training_start", "post", "ui", "admin", ok=(302,), data={"mode": "quick"}),
    Route("job_status", "get", "ui"),
    Route("training_cancel", "post", "ui", "admin", ok=(200, 302)),
    Route("review_page", "get", "ui", "admin"),
    Route(
        "review_decide",
        "post",
        "ui",
        "admin",
        ok=(302,),
        data=lambda s: {"sample": str(s.sample.pk), "decision": "confirm"},
    ),
    # --- inference (UI)
    Route("api_page", "get", "ui"),
    Route("api_key_create", "post", "ui", "admin", data={"name": "ci", "scope": "invoke"}),
    Route("api_key_revoke", "post", "ui", "admin", ok=(302,)),
    Route("sample_explain", "post", "ui", ok=(409,)),  # allowed in; nothing deployed
    Route("api_try", "post", "ui", ok=(400,), data={}),  # allowed in; no image sent
    # --- public API
    Route("api_project", "get", "api", invoke=True),
    Route("api_invoke", "post", "api", invoke=True, ok=(409,), data={"data": _b64(7)}),  # no_model
    Route("api_pretrained_invoke", "post", "api_any", ok=(400,), data={}),  # allowed in; empty body
    Route("api_export", "get", "api"),
    Route("api_labels", "get", "api"),
    Route("api_labels", "post", "api", "labeler", ok=(201,), data={"name": "hornet"}),
    Route("api_samples", "get", "api"),
    Route("api_samples", "post", "api", "labeler", ok=(201,), data={"data": _b64(123), "labels": ["ants"]}),
    Route("api_samples_next", "get", "api", "labeler", query="count=1"),
    Route("api_sample", "get", "api"),
    Route("api_sample", "delete", "api", "labeler", ok=(204,)),
    Route("api_sample_labels", "put", "api", "labeler", data={"labels": ["bees"]}),
    Route("api_sample_image", "get", "api"),
    Route("api_sample_thumbnail", "get", "api"),
    Route("api_trainings", "get", "api"),
    Route("api_trainings", "post", "api", "admin", ok=(202,), data={"mode": "quick"}),
    Route("api_training", "get", "api"),
    Route("api_training_cancel", "post", "api", "admin", ok=(202,)),
    Route("api_models", "get", "api"),
    Route("api_model", "get", "api"),
    Route("api_model", "delete", "api", "admin", ok=(204,)),
    Route("api_model_deploy", "post", "api", "admin"),
    # --- batch jobs (UI and API)
    Route("batches_page", "get", "ui"),
    Route("batch_start", "post", "ui", "admin", ok=(302,), data={"kind": "folder", "path": "/nowhere"}),
    Route("batch_detail", "get", "ui"),
    Route("batch_status", "get", "ui"),
    Route("batch_thumbnail", "get", "ui", query="key=x.png"),
    Route("batch_control", "post", "ui", "admin", ok=(302,)),
    Route("batch_to_samples", "post", "ui", "labeler", ok=(302,), data={"key": ["x.png"]}),
    Route("api_batches", "get", "api"),
    Route(
        "api_batches", "post", "api", "admin", ok=(409,), data={"source": {"kind": "folder", "path": "/nowhere"}}
    ),  # no_model
    Route("api_batch_uploads", "post", "api", "admin", ok=(415,)),  # allowed in; JSON is not multipart
    Route("api_batch", "get", "api"),
    Route("api_batch_pause", "post", "api", "admin", ok=(202,)),
    Route("api_batch_resume", "post", "api", "admin", ok=(202,)),
    Route("api_batch_cancel", "post", "api", "admin", ok=(202,)),
    Route("api_batch_results", "get", "api", query="format=csv"),
    Route("api_batch_to_samples", "post", "api", "labeler", ok=(202,), data={"keys": ["x.png"]}),
]

# Known deviations from shared/API.md: (url name, method, caller) -> reason. Strict: when the app is
# fixed the case XPASSes, fails, and the entry must be removed.
KNOWN_BUGS: dict = {}


# ---------------------------------------------------------------------------------------------
# The world: project A (one member of each role) and project B (the outsider owns it), each fully furnished.


@dataclass
class Side:
    project: Project
    sample: Sample
    label: object
    label2: object
    model: ModelVersion
    job: TrainingJob
    invite: Invite
    invite_token: str
    membership: Membership  # a viewer's, for member_role / member_remove
    spare_prefix: str  # an API key to revoke
    batch: object = None  # a finished one-item batch over a folder

    def kwargs(self, params: tuple[str, ...]) -> dict:
        values = {
            "project_id": self.project.pk,
            "sample_id": self.sample.pk,
            "label_id": self.label.pk,
            "model_id": self.model.pk,
            "job_id": self.job.pk,
            "invite_id": self.invite.pk,
            "membership_id": self.membership.pk,
            "prefix": self.spare_prefix,
            "token": self.invite_token,
            "kind": "pr",
            "back": 1,
            "batch_id": self.batch.pk,
            "action": "pause",
        }
        missing = set(params) - set(values)
        assert not missing, f"no value for URL parameter(s) {missing}: teach Side.kwargs about them"
        return {p: values[p] for p in params}

    def needles(self) -> list[str]:
        """Strings that identify this project: must never reach a stranger."""
        ids = [
            self.project.pk,
            self.sample.pk,
            self.label.pk,
            self.label2.pk,
            self.model.pk,
            self.job.pk,
            self.invite.pk,
            self.batch.pk,
        ]
        ids += list(Sample.objects.filter(project=self.project).values_list("pk", flat=True))
        out = [self.project.name]
        for i in ids:
            out += [str(i), i.hex]
        return out


@dataclass
class World:
    a: Side
    b: Side
    users: dict
    keys: dict = field(default_factory=dict)


def _batch(project: Project, *, folder, seed: int):
    """A finished batch over a one-image folder, on a model version of its own (it holds it)."""
    from batches.models import Batch, BatchChunk, BatchResult

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.png").write_bytes(base64.b64decode(_b64(seed)))
    model = make_model(project)
    batch = Batch.objects.create(
        project=project,
        status="running",
        source_kind="folder",
        source_ref=str(folder),
        model=model,
        model_version=model.version,
        listed=True,
        total=1,
        done=1,
    )
    BatchChunk.objects.create(batch=batch, index=0, items=[["x.png"]], size=1, status="done")
    BatchResult.objects.create(batch=batch, seq=0, key="x.png", label="ants", confidence=0.9, top=[[0, 0.9]])
    return batch


def _side(project: Project, *, owner, viewer, seed: int, folder=None) -> Side:
    label = label_create(project=project, name="ants")
    label2 = label_create(project=project, name="bees")
    sample = make_sample(project, seed=seed)
    model = make_model(project)
    job = TrainingJob.objects.create(project=project, mode="full")
    invite, token = invite_create(project=project, created_by=owner, role="viewer")
    spare, _ = api_key_create(project=project, name="spare", scope="invoke")
    return Side(
        project=project,
        sample=sample,
        label=label,
        label2=label2,
        model=model,
        job=job,
        invite=invite,
        invite_token=token,
        membership=Membership.objects.get(project=project, user=viewer),
        spare_prefix=spare.prefix,
        batch=_batch(project, folder=folder, seed=seed),
    )


NAME_A, NAME_B = "Alpha hive project", "Bravo hive project"


def _storages(location) -> dict:
    from django.conf import settings

    return {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }


@pytest.fixture(scope="module")
def world_committed(django_db_setup, django_db_blocker, tmp_path_factory):
    """Both projects, built once per module and committed; every test then runs inside a transaction
    that is rolled back, so even the destructive endpoints leave the next case a pristine world."""
    from django.test import override_settings

    media = tmp_path_factory.mktemp("isolation-media")
    with django_db_blocker.unblock(), override_settings(STORAGES=_storages(media)):
        from projects.tests.factories import ProjectFactory

        a_project = ProjectFactory(name=NAME_A)
        b_project = ProjectFactory(name=NAME_B)
        users = {}
        for role in ROLES:
            users[role] = MembershipFactory(project=a_project, role=role, user=UserFactory(username=f"iso_{role}")).user
        users["outsider"] = MembershipFactory(
            project=b_project, role=Role.OWNER, user=UserFactory(username="iso_outsider")
        ).user
        b_viewer = MembershipFactory(project=b_project, role=Role.VIEWER, user=UserFactory(username="b_viewer")).user
        a = _side(a_project, owner=users["owner"], viewer=users["viewer"], seed=11, folder=media / "batch-a")
        b = _side(b_project, owner=users["outsider"], viewer=b_viewer, seed=22, folder=media / "batch-b")
        w = World(a=a, b=b, users=users)
        w.keys["key_a_full"] = api_key_create(project=a_project, name="a full", scope="full")[1]
        w.keys["key_a_invoke"] = api_key_create(project=a_project, name="a invoke", scope="invoke")[1]
        w.keys["key_b_full"] = api_key_create(project=b_project, name="b full", scope="full")[1]
        try:
            yield w, media
        finally:
            from django.contrib.auth import get_user_model

            Project.objects.filter(pk__in=[a_project.pk, b_project.pk]).delete()
            get_user_model().objects.filter(pk__in=[u.pk for u in users.values()] + [b_viewer.pk]).delete()


@pytest.fixture
def world(world_committed, db, settings):
    w, media = world_committed
    settings.STORAGES = _storages(media)
    stored = {p: p.read_bytes() for p in media.rglob("*") if p.is_file()}
    yield w
    # The database rolls back after each case, stored files do not: deleting a project removes its
    # folder at once (projects/services.py project_delete, outside any on_commit). Put them back.
    for path, data in stored.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _client(world: World, caller: str) -> Client:
    if caller.startswith("key_"):
        return Client(HTTP_AUTHORIZATION=f"Bearer {world.keys[caller]}")
    c = Client()
    if caller != "anonymous":
        c.force_login(world.users[caller])
    return c


def _request(client: Client, route: Route, url: str, body: dict | None):
    if route.query:
        url = f"{url}?{route.query}"
    if route.kind.startswith("api"):
        if route.method in ("get", "delete") and not body:
            return getattr(client, route.method)(url)
        return getattr(client, route.method)(url, data=json.dumps(body or {}), content_type="application/json")
    return getattr(client, route.method)(url, body or {})


def _content(response) -> bytes:
    # Not response.close(): the test client already did, and a second close fires request_finished,
    # which would close the test's database connection.
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)  # the client's wrapper closes the file
    return response.content


def snapshot(project: Project) -> dict:
    """Everything a request could change in a project (key usage counters excluded)."""
    p = Project.objects.filter(pk=project.pk).values("name", "description", "queue_strategy", "capture").first()
    return {
        "project": p,
        "samples": sorted(
            (str(s.pk), tuple(sorted(s.labels.values_list("name", flat=True))), s.labeled_at is not None)
            for s in Sample.objects.filter(project=project)
        ),
        "labels": sorted(project.labels.values_list("id", "name", "color", "shortcut")),
        "events": LabelEvent.objects.filter(sample__project=project).count(),
        "models": sorted(ModelVersion.objects.filter(project=project).values_list("id", "deployed")),
        "jobs": sorted(TrainingJob.objects.filter(project=project).values_list("id", "status", "cancel_requested")),
        "invites": sorted(Invite.objects.filter(project=project).values_list("id", "revoked", "used")),
        "members": sorted(Membership.objects.filter(project=project).values_list("user_id", "role")),
        "keys": sorted(ProjectAPIKey.objects.filter(project=project).values_list("prefix", "revoked")),
    }


# ---------------------------------------------------------------------------------------------
# The URL walk and the coverage checks.


def walk(patterns=None, prefix: str = ""):
    """(route string, URLPattern, parameter names) for every concrete URL pattern."""
    for p in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(p.pattern)
        if route.startswith(SKIP_PREFIXES):
            continue
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            params = tuple(getattr(p.pattern, "converters", {}).keys()) or tuple(p.pattern.regex.groupindex)
            yield route, p, params


PATTERNS = {p.name: (route, p, params) for route, p, params in walk()}
TABLE_NAMES = {r.name for r in ROUTES}


def test_every_url_is_in_the_table():
    unnamed = [route for route, p, _ in walk() if not p.name]
    assert not unnamed, f"URL patterns without a name cannot be checked: {unnamed}"
    missing = sorted(set(PATTERNS) - TABLE_NAMES)
    assert not missing, f"add these URL names to ROUTES in {__name__}: {missing}"
    stale = sorted(TABLE_NAMES - set(PATTERNS))
    assert not stale, f"ROUTES names URLs that no longer exist: {stale}"


def test_api_methods_match_the_table():
    """Every handler method of every API view is in the table, and nothing more."""
    for name, (route, p, _) in PATTERNS.items():
        cls = getattr(p.callback, "view_class", None) or getattr(p.callback, "cls", None)
        if cls is None:
            continue
        handlers = {m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)}
        listed = {r.method for r in ROUTES if r.name == name}
        assert handlers == listed, f"{route}: the view handles {sorted(handlers)}, the table lists {sorted(listed)}"


UI_ROUTE_NAMES = sorted({r.name for r in ROUTES if not r.kind.startswith("api")})


@pytest.mark.parametrize("name", UI_ROUTE_NAMES)
def test_ui_methods_not_in_the_table_answer_405(world, name):
    """The table lists every method a page accepts: the others are refused, even for the owner."""
    listed = {r.method for r in ROUTES if r.name == name}
    _, _, params = PATTERNS[name]
    url = reverse(name, kwargs=world.a.kwargs(params))
    client = _client(world, "owner")
    for method in {"get", "post", "put", "delete"} - listed:
        response = getattr(client, method)(url)
        assert response.status_code == 405, f"{method.upper()} {url}: {response.status_code}"


# ---------------------------------------------------------------------------------------------
# The matrix.


def expected(route: Route, caller: str) -> str:
    """'ok', 'login' (302 to the login page), or the denial status as a string."""
    key = caller.startswith("key_")
    if route.kind in ("ui", "ui_login", "ui_token"):
        if caller == "anonymous" or key:  # pages take no API keys: the caller is anonymous there
            return "login"
        if route.kind != "ui":
            return "ok"
        if caller == "outsider":
            return "404"
        return "ok" if RANK[caller] >= RANK[route.minimum] else "403"
    if caller == "anonymous":
        return "401"
    if route.kind == "api_any":
        return "ok"
    if caller in ("outsider", "key_b_full"):
        return "404"
    if caller == "key_a_invoke":
        return "ok" if route.invoke else "403"
    if caller == "key_a_full":
        return "ok" if RANK[route.minimum] <= RANK["admin"] else "403"
    return "ok" if RANK[caller] >= RANK[route.minimum] else "403"


CASES = []
for _route in ROUTES:
    for _caller in CALLERS:
        marks = []
        if (_route.name, _route.method, _caller) in KNOWN_BUGS:
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(_route.name, _route.method, _caller)])]
        CASES.append(pytest.param(_route, _caller, marks=marks, id=f"{_route.id}-{_caller}"))


@pytest.mark.parametrize("route,caller", CASES)
def test_isolation_matrix(world, route, caller):
    _, _, params = PATTERNS[route.name]
    url = reverse(route.name, kwargs=world.a.kwargs(params))
    body = _d(route.data)(world.a) if route.data is not None else None
    before = snapshot(world.a.project)

    response = _request(_client(world, caller), route, url, body)
    content = _content(response)
    status = response.status_code
    want = expected(route, caller)
    where = f"{route.method.upper()} {url} as {caller}"

    assert status < 500, f"{where}: {status} {content[:300]!r}"
    if want == "ok":
        assert status in route.ok, f"{where}: {status}, want one of {route.ok}: {content[:300]!r}"
    elif want == "login":
        assert status == 302 and response["Location"].startswith("/accounts/login/"), (
            f"{where}: {status} {response.get('Location')}, want 302 to /accounts/login/"
        )
    else:
        assert status == int(want), f"{where}: {status}, want {want}: {content[:300]!r}"
        if route.kind.startswith("api"):
            code = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}[status]
            assert json.loads(content)["error"]["code"] == code, f"{where}: {content[:300]!r}"

    if want != "ok":
        # A refused request changes nothing (re-read: deleting the project would show here too).
        assert snapshot(world.a.project) == before, f"{where} was refused with {status} but changed the project"

    if caller in STRANGERS and route.kind != "ui_token":  # the invite token is a capability, by design
        text = content.decode("utf-8", "replace").lower()
        location = response.get("Location", "")
        if location.startswith("/accounts/login/"):
            location = ""  # ?next= echoes the caller's own URL
        for needle in world.a.needles():
            assert needle.lower() not in text, f"{where}: the response leaks {needle!r}"
            assert needle.lower() not in location.lower(), f"{where}: the redirect leaks {needle!r}"


# ---------------------------------------------------------------------------------------------
# Project B's objects under project A's URL: 404 (or no effect), and B untouched.

OBJECT_ROUTES = [r for r in ROUTES if r.name in PATTERNS and set(PATTERNS[r.name][2]) - {"project_id", "kind", "back"}]
# Routes that take another object's id in the body.
BODY_ID_ROUTES = {
    "review_decide": (lambda a, b: {"sample": str(b.sample.pk), "decision": "confirm"}, (404,)),
    "samples_bulk_label": (lambda a, b: {"sample": [str(b.sample.pk)], "label": "ants"}, (302,)),
    "label_merge": (lambda a, b: {"target": str(b.label2.pk)}, (200, 302)),
}
IDOR_CASES = []
for _route in OBJECT_ROUTES + [r for r in ROUTES if r.name in BODY_ID_ROUTES]:
    if _route.kind == "ui_token":
        continue  # the token names its own project; there is no project in the URL
    for _caller in ("owner",) + (("key_a_full",) if _route.kind == "api" else ()):
        IDOR_CASES.append(pytest.param(_route, _caller, id=f"{_route.id}-{_caller}"))


@pytest.mark.parametrize("route,caller", IDOR_CASES)
def test_foreign_object_ids_are_404(world, route, caller):
    _, _, params = PATTERNS[route.name]
    kwargs = world.b.kwargs(params)
    kwargs["project_id"] = world.a.project.pk
    if route.name in BODY_ID_ROUTES:
        kwargs = world.a.kwargs(params)
        make_body, ok = BODY_ID_ROUTES[route.name]
        body = make_body(world.a, world.b)
    else:
        body = _d(route.data)(world.a) if route.data is not None else None
        ok = (404,)
    url = reverse(route.name, kwargs=kwargs)
    before_b = snapshot(world.b.project)

    response = _request(_client(world, caller), route, url, body)
    content = _content(response)
    where = f"{route.method.upper()} {url} as {caller} (project B's ids under project A)"
    assert response.status_code in ok, f"{where}: {response.status_code}, want {ok}: {content[:300]!r}"
    assert snapshot(world.b.project) == before_b, f"{where} changed project B"
    text = content.decode("utf-8", "replace").lower()
    for needle in world.b.needles():
        assert needle.lower() not in text, f"{where}: the response leaks {needle!r}"


@pytest.mark.parametrize("caller", ["owner", "viewer", "key_a_full", "key_a_invoke"])
def test_invoke_cannot_pin_another_projects_model(world, caller):
    """?model= names a model version: one of project B's is 'no such model' under project A."""
    url = reverse("api_invoke", kwargs={"project_id": world.a.project.pk}) + f"?model={world.b.model.pk}"
    response = _client(world, caller).post(url, data=json.dumps({"data": _b64(7)}), content_type="application/json")
    assert response.status_code == 404, response.content[:300]
    assert response.json()["error"]["code"] == "not_found"
    for needle in world.b.needles():
        assert needle.lower() not in response.content.decode().lower(), f"the answer leaks {needle!r}"
