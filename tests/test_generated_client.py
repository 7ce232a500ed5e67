"""An integrator's client, generated with openapi-python-client from the served schema, drives the
whole workflow against a live server with generated code only."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import zipfile

import pytest
import requests

from conftest import datasets_dir

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = """\
post_hooks: []
package_name_override: pictor_client
content_type_overrides:
  image/*: application/octet-stream
  image/webp: application/octet-stream
  application/zip: application/octet-stream
  video/*: application/octet-stream
"""


@pytest.fixture
def pictor_client(live_server, tmp_path, monkeypatch):
    schema = requests.get(f"{live_server.url}/api/v1/schema?format=json", timeout=30)
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_bytes(schema.content)
    (tmp_path / "config.yml").write_text(CONFIG)
    done = subprocess.run(
        [
            str(sys.executable.rsplit("/", 1)[0] + "/openapi-python-client"),
            "generate",
            "--path",
            "schema.json",
            "--output-path",
            "pictor_client",
            "--meta",
            "none",
            "--config",
            "config.yml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "pictor_client" or m.startswith("pictor_client.")]:
        del sys.modules[name]
    package = importlib.import_module("pictor_client")
    # Every generated module imports (three did not: one schema for JSON, form and multipart bodies).
    for path in (tmp_path / "pictor_client").rglob("*.py"):
        module = ".".join(path.relative_to(tmp_path).with_suffix("").parts)
        importlib.import_module(module.removesuffix(".__init__"))
    return package


@pytest.fixture
def eager_tasks():
    """Background steps run in the request that queues them: the test needs no worker process."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def _image(cls: str, i: int) -> bytes:
    files = sorted((datasets_dir() / "hymenoptera_data" / "train" / cls).glob("*.jpg"))
    if not files:
        pytest.skip("hymenoptera_data is missing")
    return files[i].read_bytes()


def test_it_drives_the_workflow_with_generated_code_only(pictor_client, live_server, eager_tasks, settings):
    import base64

    from pictor_client import AuthenticatedClient
    from pictor_client.api.invoke import invoke
    from pictor_client.api.labels import labels_create, labels_list
    from pictor_client.api.models import model_deploy, models_list
    from pictor_client.api.projects import project_export, projects_retrieve
    from pictor_client.api.samples import sample_labels_update, samples_create, samples_next
    from pictor_client.api.trainings import training_retrieve, trainings_create
    from pictor_client.models import (
        InvokeBatchRequest,
        InvokeFormat,
        InvokeItemRequest,
        InvokeMultipartRequest,
        LabelCreateRequest,
        SampleLabelsRequest,
        TrainingCreateRequest,
        UploadItemRequest,
        UploadMultipartRequest,
    )
    from pictor_client.models.mode_enum import ModeEnum
    from pictor_client.types import File

    from projects import keys
    from projects.tests.factories import ProjectFactory

    settings.PICTOR_BACKBONES = ["lite0"]
    project = ProjectFactory(name="Generated")
    key = keys.api_key_create(project=project, name="integrator", scope="full")[1]
    api = AuthenticatedClient(base_url=live_server.url, token=key, raise_on_unexpected_status=True, timeout=120)

    for name in ("ants", "bees"):
        r = labels_create.sync_detailed(project.pk, client=api, body=LabelCreateRequest(name=name))
        assert r.status_code == 201 and r.parsed.name == name
    assert {x.name for x in labels_list.sync(project.pk, client=api).results} == {"ants", "bees"}

    # Upload: multipart for the ants (labeled on the way in), base64 JSON for the bees (labeled after).
    ants = [
        File(payload=io.BytesIO(_image("ants", i)), file_name=f"ant{i}.jpg", mime_type="image/jpeg") for i in range(4)
    ]
    r = samples_create.sync_detailed(project.pk, client=api, body=UploadMultipartRequest(file=ants, label=["ants"]))
    assert r.status_code == 201 and all(s.labels == ["ants"] for s in r.parsed.samples)
    bee_ids = []
    for i in range(4):
        body = UploadItemRequest(data=base64.b64encode(_image("bees", i)).decode(), filename=f"bee{i}.jpg")
        r = samples_create.sync_detailed(project.pk, client=api, body=body)
        assert r.status_code == 201
        bee_ids.append(r.parsed.samples[0].id)
    for sid in bee_ids:
        r = sample_labels_update.sync_detailed(project.pk, sid, client=api, body=SampleLabelsRequest(labels=["bees"]))
        assert r.status_code == 200 and r.parsed.labels == ["bees"]
    unlabeled = base64.b64encode(_image("ants", 10)).decode()
    assert (
        samples_create.sync_detailed(project.pk, client=api, body=UploadItemRequest(data=unlabeled)).status_code == 201
    )
    nxt = samples_next.sync(project.pk, client=api, count=5)
    assert len(nxt.results) == 1

    r = trainings_create.sync_detailed(project.pk, client=api, body=TrainingCreateRequest(mode=ModeEnum.QUICK))
    assert r.status_code == 202
    job = training_retrieve.sync(project.pk, r.parsed.id, client=api)
    assert job.status.value == "succeeded", job.error
    model_id = job.model.id
    assert model_deploy.sync(project.pk, model_id, client=api).deployed is True
    assert any(m.deployed for m in models_list.sync(project.pk, client=api).results)
    assert projects_retrieve.sync(project.pk, client=api).deployed_model.id == model_id

    single = invoke.sync(
        project.pk, client=api, body=InvokeItemRequest(data=base64.b64encode(_image("bees", 20)).decode())
    )
    assert single.label in ("ants", "bees") and single.model.id == model_id
    batch = invoke.sync(
        project.pk,
        client=api,
        body=InvokeBatchRequest(
            items=[InvokeItemRequest(data=base64.b64encode(_image(c, 21)).decode()) for c in ("ants", "bees")]
        ),
    )
    assert len(batch.results) == 2
    files = [File(payload=io.BytesIO(_image("ants", 22)), file_name="a.jpg", mime_type="image/jpeg")]
    series = invoke.sync(project.pk, client=api, body=InvokeMultipartRequest(file=files), format_=InvokeFormat.SERIES)
    assert series.series and series.series[0].object_.label in ("ants", "bees")

    export = project_export.sync_detailed(project.pk, client=api)
    assert export.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    assert "samples.csv" in names and sum(n.startswith("ants/") for n in names) == 4
