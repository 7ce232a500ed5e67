"""Redis stops and comes back while people upload and label: nothing is lost, the UI says what is
wrong while it is down, and the background work catches up afterwards.

Runs its own redis-server on a free loopback port, its own gunicorn and Celery worker, so killing
Redis touches nothing else on the machine.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time

import numpy as np
import pytest
import requests
from PIL import Image

from projects.tests.factories import PASSWORD
from tests.procs import BIN, celery_call, celery_worker, clean_env, free_port, shared_data_dir, start, stop, wait_http


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def start_redis(port: int, tmp_path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return proc
        except redis.RedisError:
            time.sleep(0.1)
    raise AssertionError("redis-server did not start")


def login(base: str, username: str) -> requests.Session:
    s = requests.Session()
    page = s.get(f"{base}/accounts/login/", timeout=10)
    assert page.status_code == 200 and "csrftoken" in s.cookies, (page.status_code, page.text[:500])
    r = s.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    assert r.status_code == 200 and "/accounts/login/" not in r.url
    s.headers.update({"X-CSRFToken": s.cookies["csrftoken"], "Referer": base + "/"})
    return s


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_uploads_and_labels_survive_a_redis_restart(team, settings, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from labeling.models import Sample
    from training.selectors import embedding_progress

    port, web_port = free_port(), free_port()
    redis_proc = start_redis(port, tmp_path)
    env = shared_data_dir(settings, tmp_path / "data")
    env = clean_env(
        **{
            **env,
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "PICTOR_BACKBONES": "lite0",
            "PICTOR_QUICK_DEBOUNCE": "0.2",
            # Static files straight from the finders: no collectstatic step for this server.
            "DEBUG": "true",
        }
    )
    settings.PICTOR_BACKBONES = ["lite0"]
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = start(
        [
            str(BIN / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "60",
        ],
        env=env,
        log=web_log,
    )
    worker = celery_worker("default,embeddings", env=env, log=worker_log)
    base = f"http://127.0.0.1:{web_port}"
    statuses: list[int] = []
    try:
        from django.contrib.auth.hashers import make_password

        # The server runs in production mode, where the tests' fast MD5 hasher does not exist.
        user = team.user("labeler")
        user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
        user.save(update_fields=["password"])
        wait_http(f"{base}/accounts/login/", proc=web, log=web_log)
        s = login(base, "labeler")
        api = f"{base}/api/v1/projects/{team.project.pk}"

        def upload(seed: int, label: str | None) -> str:
            data = {"label": label} if label else {}
            r = s.post(
                f"{api}/samples", files={"file": (f"{seed}.jpg", jpeg(seed), "image/jpeg")}, data=data, timeout=30
            )
            statuses.append(r.status_code)
            assert r.status_code == 201, r.text
            return r.json()["samples"][0]["id"]

        def label(sample_id: str, name: str) -> None:
            r = s.put(f"{api}/samples/{sample_id}/labels", json={"labels": [name]}, timeout=30)
            statuses.append(r.status_code)
            assert r.status_code == 200, r.text

        up = [upload(i, None) for i in range(4)]
        label(up[0], "ants")
        label(up[1], "bees")

        stop(redis_proc)  # Redis goes away mid-session
        down = [upload(10 + i, None) for i in range(4)]
        label(up[2], "ants")
        label(down[0], "bees")
        status = s.get(f"{base}/projects/{team.project.pk}/embeddings/status/", timeout=30)
        statuses.append(status.status_code)
        assert status.status_code == 200
        assert "task queue (Redis) is unreachable" in status.text

        redis_proc = start_redis(port, tmp_path)  # back on the same port, empty
        # What beat does every minute: queue what is missing. The worker reconnects by itself.
        client_env = clean_env(
            **{
                k: v
                for k, v in env.items()
                if k in ("PICTOR_DATA_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PICTOR_BACKBONES")
            }
        )
        celery_call("training.tasks.embeddings_sweep", [], env=client_env, timeout=60)
        deadline = time.monotonic() + 120
        while not embedding_progress(project_id=team.project.pk)["complete"]:
            assert time.monotonic() < deadline, f"no recovery:\n{worker_log.read_text()[-3000:]}"
            time.sleep(0.5)
        label(down[1], "ants")  # and labeling works normally again
    finally:
        stop(worker)
        stop(web)
        stop(redis_proc)

    assert all(code < 500 for code in statuses), statuses
    samples = Sample.objects.filter(project=team.project)
    assert samples.count() == 8
    assert {str(x) for x in samples.filter(labeled_at__isnull=False).values_list("pk", flat=True)} == {
        up[0],
        up[1],
        up[2],
        down[0],
        down[1],
    }
    assert "Traceback" not in web_log.read_text() or "could not queue" in web_log.read_text()
