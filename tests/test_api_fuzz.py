"""Property-based fuzzing of the public API from its own OpenAPI schema, against a real server.

Schemathesis reads the schema the live server serves (/api/v1/schema) and generates requests for
every operation — valid ones (positive) and invalid ones (negative: wrong types, missing fields,
out-of-range values) — sent over HTTP with a full-scope API key of a project that has a deployed
quick model. Path ids are pinned to objects that exist (so requests get past the 404s), and also
left to generation (random ids). Every answer must be below 500; every 4xx must carry the error
envelope; and every answer must match what the schema documents for it (status, content type, body).

Why the Python API and not `schema.parametrize()`: the live server and the deployed model are
built once for the whole run (that costs seconds; a parametrized test per operation would build
them 21 times on a transactional database), and every failure is collected and reported together
instead of stopping at the first one. Hypothesis runs derandomized (a fixed seed derived from the
test) with a fixed number of examples per operation and mode, without shrinking.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


from labeling.models import Sample
from projects import keys
from training.models import ModelVersion, TrainingJob

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

EXAMPLES = 6  # per operation, per generation mode, per id pinning
IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8UaHBgA0wMeAAg1MCAB4nAXgllso1AAAAAElFTkSuQmCC"
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
DOC_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def other_png(seed: int) -> str:
    """A small PNG, base64, different for each seed (so it is not a duplicate of another upload)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 37 % 256, 90, 200)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def envelope_problem(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"no error object: {body!r:.300}"
    if not isinstance(error.get("code"), str) or not CODE.match(error["code"]):
        return f"bad code: {error.get('code')!r}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return f"bad message: {error.get('message')!r}"
    if "fields" in error and not isinstance(error["fields"], dict):
        return f"bad fields: {error['fields']!r}"
    return None


def describe(case, response: requests.Response) -> str:
    request = response.request
    body = request.body if isinstance(request.body, (bytes, type(None))) else request.body.encode()
    return (
        f"{request.method} {request.url} content-type={request.headers.get('Content-Type')} "
        f"body={(body or b'')[:300]!r} -> {response.status_code} {response.text[:300]!r}"
    )


def test_generated_requests_never_get_a_5xx_and_errors_keep_the_envelope(deployed, live_server, settings):  # noqa: F811
    settings.PICTOR_API_RATE = "1000000/min"  # throttling is tested elsewhere; here it would hide answers
    project = deployed.project
    key = keys.api_key_create(project=project, name="fuzz", scope="full")[1]
    auth = {"Authorization": f"Bearer {key}"}
    model = ModelVersion.objects.get(project=project, deployed=True)
    stable, victim = Sample.objects.filter(project=project).order_by("created")[:2]
    pinned = {
        "project_id": str(project.pk),
        "sample_id": str(stable.pk),
        "job_id": str(TrainingJob.objects.filter(project=project).first().pk),
        "model_id": str(model.pk),
    }
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 22
    by_id = {op.definition.raw["operationId"]: op for op in operations}

    session = requests.Session()
    failures: list[str] = []
    stats: dict[str, dict] = {}

    def check(operation, case) -> None:
        response = case.call(base_url=live_server.url, session=session, headers=auth, timeout=120)
        counts = stats.setdefault(operation.label, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"5xx: {describe(case, response)}")
            return
        if 400 <= response.status_code < 500 and (problem := envelope_problem(response)):
            failures.append(f"envelope ({problem}): {describe(case, response)}")
        if (
            case.meta is not None
            and case.meta.generation.mode == GenerationMode.NEGATIVE
            and response.status_code < 400
        ):
            return  # a negative case may still be a valid request (e.g. an unknown extra field)
        try:
            case.validate_response(response, checks=DOC_CHECKS)
        except (AssertionError, FailureGroup) as exc:
            failures.append(f"schema ({str(exc).strip().splitlines()[0]}): {describe(case, response)}")

    started = time.monotonic()
    # Valid requests first, from the schema's own examples: the success paths of the image endpoints
    # (random bytes are never an image, so generation alone only reaches their error paths).
    png = base64.b64decode(IMAGE)
    one, two = {"data": IMAGE}, {"items": [{"data": IMAGE}, {"data": "bm90IGFuIGltYWdl"}]}
    json_ = "application/json"
    for operation_id, query, body, media_type in [
        ("invoke", {}, one, json_),
        ("invoke", {"top_k": "1"}, two, json_),
        ("invoke", {"format": "series", "pretrained": "3"}, one, json_),
        ("invoke", {"format": "series", "capture": "true"}, two, json_),
        ("invoke", {"explain": "true", "model": pinned["model_id"]}, one, json_),
        ("invoke", {}, {"file": [png, png]}, "multipart/form-data"),
        ("pretrained_invoke", {"top_k": "3"}, one, json_),
        ("pretrained_invoke", {}, two, json_),
        ("pretrained_invoke", {}, {"file": [png]}, "multipart/form-data"),
        ("samples_create", {}, {**one, "labels": ["ants"]}, json_),
        ("samples_create", {}, two, json_),
        ("samples_create", {}, {"file": [png], "label": ["bees"]}, "multipart/form-data"),
        # NUL characters, which PostgreSQL refuses in text (these were 500s once).
        ("labels_create", {}, {"name": "nul\x00"}, json_),
        ("samples_list", {"label": "nul\x00"}, None, None),
        ("samples_create", {}, {"data": other_png(1), "labels": ["nul\x00"]}, json_),
        ("samples_create", {}, {"data": other_png(2), "filename": "nul\x00.png"}, json_),
        ("sample_labels_update", {}, {"labels": ["nul\x00"]}, json_),
        ("invoke", {"capture": "true"}, {"items": [{"data": other_png(3), "filename": "nul\x00.png"}]}, json_),
    ]:
        operation = by_id[operation_id]
        names = {p.name for p in operation.path_parameters}
        extra = {"body": body, "media_type": media_type} if body is not None else {}
        path_parameters = {k: v for k, v in pinned.items() if k in names}
        check(operation, operation.Case(path_parameters=path_parameters, query=query, **extra))
    ok = {label: c for label, c in stats.items() if any(200 <= s < 300 for s in c)}
    assert len(ok) >= 3, stats

    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        fixed = {**pinned, "sample_id": str(victim.pk)} if operation.method.lower() == "delete" else pinned
        variants = [{k: v for k, v in fixed.items() if k in names}]
        if names - {"project_id"}:
            variants.append({"project_id": pinned["project_id"]})  # the other ids generated: unknown objects
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in variants:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @hsettings(
                    max_examples=EXAMPLES,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate],
                )
                @given(case=strategy)
                def run(case):
                    check(operation, case)  # noqa: B023 (run at once, inside this iteration)

                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing negative to generate when every parameter is pinned and there is no body
    elapsed = time.monotonic() - started

    summary = "\n".join(f"  {label}: {dict(sorted(c.items()))}" for label, c in sorted(stats.items()))
    print(f"\nfuzzed {sum(sum(c.values()) for c in stats.values())} requests in {elapsed:.0f} s:\n{summary}")
    assert len(stats) == len(operations), "some operations were never exercised"
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(dict.fromkeys(failures))


def test_documented_examples_succeed(deployed, live_server, settings):  # noqa: F811
    """The request examples in the schema (a tiny PNG) are real, working requests."""
    project = deployed.project
    key = keys.api_key_create(project=project, name="examples", scope="full")[1]
    spec = requests.get(
        f"{live_server.url}/api/v1/schema", headers={"Accept": "application/vnd.oai.openapi+json"}
    ).json()
    invoke = spec["paths"]["/api/v1/projects/{project_id}/invoke"]["post"]
    examples = invoke["requestBody"]["content"]["application/json"]["examples"]
    for name, example in examples.items():
        r = requests.post(
            f"{live_server.url}/api/v1/projects/{project.pk}/invoke",
            data=json.dumps(example["value"]),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=60,
        )
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        assert ("results" in body) == ("items" in example["value"]), name
