"""Helpers for tests that run real server and worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**overrides: str) -> dict:
    """The environment of a fresh shell: none of the test run's own settings leak in."""
    drop = {
        "PYTEST_VERSION",
        "SECRET_KEY",
        "DEBUG",
        "DATABASE_URL",
        "REDIS_URL",
        "PICTOR_DATA_DIR",
        "PYTEST_CURRENT_TEST",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env.update(overrides)
    return env


def start(cmd: list[str], *, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def wait_http(
    url: str, *, timeout: float = 60, proc: subprocess.Popen | None = None, log: Path | None = None
) -> requests.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{log.read_text()[-4000:] if log else ''}")
        try:
            return requests.get(url, timeout=5)
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s: {last}\n{log.read_text()[-4000:] if log else ''}")


def celery_call(task: str, args: list, *, env: dict, timeout: float = 60) -> str:
    """Send a task from a separate client process configured by env, wait for its result."""
    code = (
        "import sys, django; django.setup(); from config.celery import app; "
        f"r = app.send_task({task!r}, args={args!r}); print(r.get(timeout={timeout}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + 60
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout.strip()


def worker_database_url() -> str:
    """A URL for the pytest-django test database, for worker processes (PostgreSQL only)."""
    from urllib.parse import quote

    import pytest
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL: a worker process cannot share pytest's SQLite test database")
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def worker_redis_url() -> str:
    import pytest
    import redis

    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs Redis: REDIS_URL is not set (scripts/test.sh sets it when Redis answers)")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs Redis: {url} does not answer ({exc})")
    return url


def shared_data_dir(settings, data_dir: Path) -> dict:
    """Point this process's storage and model cache at data_dir, as a worker with
    PICTOR_DATA_DIR=data_dir derives them; returns the env for such a worker."""
    media = data_dir / "media"
    media.mkdir(parents=True, exist_ok=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}},
    }
    settings.MODEL_CACHE_DIR = data_dir / "model-cache"
    settings.PICTOR_FEATURES_DIR = data_dir / "features"  # the workers' feature stores, mapped here
    return {
        "PICTOR_DATA_DIR": str(data_dir),
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": worker_redis_url(),
        "SECRET_KEY": "w" * 40,
    }


def celery_worker(queues: str, *, env: dict, log: Path, name: str = "w") -> subprocess.Popen:
    return start(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env=env,
        log=log,
    )


def celery_beat(*, env: dict, log: Path) -> subprocess.Popen:
    return start([str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"], env=env, log=log)
