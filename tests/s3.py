"""An S3-compatible server for the tests: moto's server (`moto[server]`, a dev dependency), started
once per test session on a free port in a thread of the pytest process. It speaks real HTTP, so
worker processes reach it too (give them s3_env's variables)."""

from __future__ import annotations

import pytest

from tests.procs import free_port


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto", reason="moto[server] is a dev dependency: pip install -e '.[dev]'")
    pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict:
    """Credentials and endpoint in this process's environment (boto3 reads AWS_ENDPOINT_URL); returns them."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def s3_bucket(name: str):
    """A fresh bucket on the test server (emptied first if an earlier test left it)."""
    import boto3

    client = boto3.client("s3")
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
    return client
