"""The OpenAPI schema is complete and clean, covers the contract (shared/API.md), and is served with
its Swagger UI from our own static files (no CDN)."""

from __future__ import annotations

import re
from unittest import mock

import pytest
import yaml
from django.core.management import call_command

from conftest import REPO

API_MD = REPO.parent / "shared" / "API.md"

# API.md "Batch jobs" (issue #14).
BATCH_JOBS = {
    ("post", "/projects/{}/batches"),
    ("post", "/projects/{}/batches/uploads"),
    ("get", "/projects/{}/batches"),
    ("get", "/projects/{}/batches/{}"),
    ("post", "/projects/{}/batches/{}/pause"),
    ("post", "/projects/{}/batches/{}/resume"),
    ("post", "/projects/{}/batches/{}/cancel"),
    ("get", "/projects/{}/batches/{}/results"),
    ("post", "/projects/{}/batches/{}/to-samples"),
}

# Every endpoint of API.md as (method, path with placeholders), kept here too so the test means the
# same thing where shared/ is not checked out; when it is, API.md itself is parsed as well.
CONTRACT = {
    ("get", "/projects/{}"),
    ("get", "/projects/{}/labels"),
    ("post", "/projects/{}/labels"),
    ("post", "/projects/{}/samples"),
    ("get", "/projects/{}/samples"),
    ("get", "/projects/{}/samples/{}"),
    ("put", "/projects/{}/samples/{}/labels"),
    ("delete", "/projects/{}/samples/{}"),
    ("get", "/projects/{}/samples/next"),
    ("post", "/projects/{}/trainings"),
    ("get", "/projects/{}/trainings/{}"),
    ("post", "/projects/{}/trainings/{}/cancel"),
    ("get", "/projects/{}/models"),
    ("post", "/projects/{}/models/{}/deploy"),
    ("post", "/projects/{}/invoke"),
    ("post", "/pretrained/imagenet/invoke"),
    ("get", "/projects/{}/export"),
} | BATCH_JOBS
# In the contract but not served yet: listed so a gap is visible; strict, so an entry must be
# removed from here the day its endpoint appears.
NOT_YET: set[tuple[str, str]] = set()

OPERATION_IDS = {
    "projects_retrieve",
    "samples_list",
    "samples_create",
    "sample_retrieve",
    "sample_delete",
    "sample_labels_update",
    "samples_next",
    "labels_list",
    "labels_create",
    "trainings_list",
    "trainings_create",
    "training_retrieve",
    "training_cancel",
    "models_list",
    "model_retrieve",
    "model_delete",
    "model_deploy",
    "invoke",
    "pretrained_invoke",
    "sample_image",
    "sample_thumbnail",
    "project_export",
    "batches_list",
    "batches_create",
    "batch_upload",
    "batch_retrieve",
    "batch_pause",
    "batch_resume",
    "batch_cancel",
    "batch_results",
    "batch_to_samples",
}


def _norm(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/api/v1"))


def contract_endpoints(text: str) -> set[tuple[str, str]]:
    """(method, path) of each row of API.md's endpoint tables.

    A row's first cell holds backticked tokens: "`GET /p`", "`POST`" (same path), "`GET .../x/{id}`"
    ("..." is the project prefix) and "`/resume`" (the previous path with its last segment swapped).
    """
    out = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        method, path = None, None
        for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
            full = re.fullmatch(r"(GET|POST|PUT|DELETE|PATCH) (\S+)", token)
            if full:
                method, raw = full.group(1).lower(), full.group(2).split("?")[0]
                path = _norm(raw.replace("...", "/projects/{project}", 1) if raw.startswith("...") else raw)
            elif re.fullmatch(r"GET|POST|PUT|DELETE|PATCH", token) and path:
                method = token.lower()
            elif re.fullmatch(r"/[a-z-]+", token) and path:
                path = path.rsplit("/", 1)[0] + token
            else:
                continue
            if path.startswith("/"):
                out.add((method, path))
    return out


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("openapi") / "schema.yml"
    # --fail-on-warn raises on any error or warning; --validate checks against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def _operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, _norm(path)): op
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_schema_is_valid_without_warnings_and_covers_the_contract(schema):
    ops = _operations(schema)
    missing = CONTRACT - set(ops)
    assert missing == NOT_YET, f"contract endpoints missing from the schema: {sorted(missing - NOT_YET)}"
    if API_MD.is_file():
        from_doc = contract_endpoints(API_MD.read_text())
        assert from_doc, "could not parse the endpoint table of API.md"
        assert from_doc - set(ops) <= NOT_YET, (
            f"in API.md but not in the schema: {sorted(from_doc - set(ops) - NOT_YET)}"
        )
    assert {op["operationId"] for op in ops.values()} == OPERATION_IDS


def test_every_operation_documents_auth_errors_and_the_envelope(schema):
    components = schema["components"]
    assert components["securitySchemes"]["apiKey"] == {
        **components["securitySchemes"]["apiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    assert components["securitySchemes"]["session"]["in"] == "cookie"
    envelope = components["schemas"]["ErrorDetail"]
    assert set(envelope["properties"]) == {"code", "message", "fields"} and set(envelope["required"]) == {
        "code",
        "message",
    }
    for (method, path), op in _operations(schema).items():
        assert {"apiKey": []} in op["security"] and {"session": []} in op["security"], (method, path)
        assert {} not in op["security"], f"{method} {path} must not be anonymous"
        for status in ("401", "403", "404", "429"):
            assert status in op["responses"], (method, path, status)
        for status, response in op["responses"].items():
            if status.startswith("4"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                body = components["schemas"][ref.rsplit("/", 1)[-1]]
                assert body == components["schemas"]["Error"] or body.get("allOf") or "error" in body["properties"], (
                    method,
                    path,
                    status,
                )
        assert "Retry-After" in op["responses"]["429"]["headers"]


def test_statuses_and_parameters_of_the_contract(schema):
    ops = _operations(schema)

    def params(key):
        return {p["name"] for p in ops[key].get("parameters", []) if p["in"] == "query"}

    assert {"201", "207", "400", "413", "415"} <= set(ops["post", "/projects/{}/samples"]["responses"])
    assert set(ops["post", "/projects/{}/samples"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
        "video/*",
    }
    assert set(ops["post", "/projects/{}/invoke"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
        "video/*",
    }
    assert {"200", "207", "409", "413", "415"} <= set(ops["post", "/projects/{}/invoke"]["responses"])
    assert "202" in ops["post", "/projects/{}/trainings"]["responses"]
    assert "202" in ops["post", "/projects/{}/trainings/{}/cancel"]["responses"]
    assert "409" in ops["post", "/projects/{}/labels"]["responses"]
    assert "204" in ops["delete", "/projects/{}/samples/{}"]["responses"]
    # cursor: an addition (keyset pages, issue #15); video: a video's frames (issue #16)
    assert params(("get", "/projects/{}/samples")) == {"labeled", "label", "video", "page", "page_size", "cursor"}
    assert params(("get", "/projects/{}/samples/next")) == {"count"}
    assert params(("post", "/projects/{}/invoke")) == {
        "top_k",
        "format",
        "fps",
        "pretrained",
        "explain",
        "capture",
        "model",
    }
    assert params(("post", "/projects/{}/samples")) == {"fps"}
    assert params(("post", "/pretrained/imagenet/invoke")) == {"top_k"}


def test_the_api_md_parser_reads_rows_with_several_methods():
    rows = contract_endpoints(
        '| `GET /projects/{project}/labels` · `POST` `{"name"}` | list |\n| `GET /x?labeled=true` | y |'
    )
    assert rows == {("get", "/projects/{}/labels"), ("post", "/projects/{}/labels"), ("get", "/x")}
    rows = contract_endpoints(
        "| `GET /projects/{project}/b` · `GET .../b/{id}` | x |\n| `POST .../b/{id}/pause` · `/resume` | y |"
    )
    assert rows == {
        ("get", "/projects/{}/b"),
        ("get", "/projects/{}/b/{}"),
        ("post", "/projects/{}/b/{}/pause"),
        ("post", "/projects/{}/b/{}/resume"),
    }


def test_docs_page_uses_the_vendored_swagger_ui(client):
    r = client.get("/api/v1/docs")
    assert r.status_code == 200
    html = r.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css" in html
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"'<>]+", html)
    for asset in re.findall(r"(/static/drf_spectacular_sidecar/[^\"'\s]+)", html):
        assert client.get(asset).status_code == 200, asset


def test_schema_endpoint_serves_the_schema(client):
    r = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    body = r.json()
    assert body["openapi"].startswith("3.") and body["info"]["title"] == "Pictor API"
    assert "/api/v1/projects/{project_id}/invoke" in body["paths"]
    r = client.get("/api/v1/schema")
    assert r.status_code == 200 and b"openapi:" in r.content


def test_it_generates_the_served_schema_one_request_at_a_time(client):
    # drf-spectacular's first generation in a process is not thread-safe (concurrent first requests
    # after start-up answered 500): the view holds a lock while it generates.
    from drf_spectacular.generators import SchemaGenerator

    from config import urls

    held = []
    real = SchemaGenerator.get_schema

    def spy(self, *args, **kwargs):
        held.append(urls.SCHEMA_LOCK.locked())
        return real(self, *args, **kwargs)

    with mock.patch.object(SchemaGenerator, "get_schema", spy):
        assert client.get("/api/v1/schema?format=json").status_code == 200
    assert held == [True] and not urls.SCHEMA_LOCK.locked()
