"""The README's run command on the embedded default: SQLite, no Redis, web and a real worker together."""

import re

import pytest
import redis
import requests

from tests.procs import BIN, REPO, celery_call, clean_env, free_port, start, stop, wait_http


@pytest.mark.slow
def test_run_script_boots_web_and_worker_without_redis(tmp_path):
    port = free_port()
    env = clean_env(
        PICTOR_DATA_DIR=str(tmp_path / "data"),
        PICTOR_BIND=f"127.0.0.1:{port}",
        PICTOR_ADMIN_PASSWORD="smoke-admin-pass-123",
    )
    log = tmp_path / "run.log"
    proc = start([str(REPO / "scripts" / "run.sh")], env=env, log=log)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/accounts/login/", timeout=120, proc=proc, log=log)
        assert page.status_code == 200 and "Sign in" in page.text
        assert (tmp_path / "data" / "pictor.sqlite3").exists()
        assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0

        # Static files are served in production mode (DEBUG off) from our own copy of htmx.
        htmx = re.search(r'src="([^"]*htmx[^"]*\.js)"', page.text).group(1)
        assert requests.get(f"http://127.0.0.1:{port}{htmx}", timeout=10).status_code == 200

        # The first admin was created from PICTOR_ADMIN_PASSWORD and can sign in.
        s = requests.Session()
        s.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=10)
        r = s.post(
            f"http://127.0.0.1:{port}/accounts/login/",
            data={
                "username": "admin",
                "password": "smoke-admin-pass-123",
                "csrfmiddlewaretoken": s.cookies["csrftoken"],
            },
            headers={"Referer": f"http://127.0.0.1:{port}/accounts/login/"},
            timeout=10,
        )
        assert r.status_code == 200 and "Your projects" in r.text

        # A task round-trips through the real worker process over the filesystem broker.
        client_env = clean_env(PICTOR_DATA_DIR=str(tmp_path / "data"))
        assert celery_call("pictor.ping", ["embedded"], env=client_env) == "embedded"
        assert "filesystem" in log.read_text() or "celery@" in log.read_text()
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_task_round_trips_through_a_real_worker_on_redis(tmp_path):
    url = "redis://127.0.0.1:6379/14"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (make test starts it; CI requires it)")
    env = clean_env(PICTOR_DATA_DIR=str(tmp_path), REDIS_URL=url, SECRET_KEY="r" * 40)
    log = tmp_path / "worker.log"
    worker = start(
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "default", "-c", "1", "--loglevel", "INFO"],
        env=env,
        log=log,
    )
    try:
        assert celery_call("pictor.ping", ["over redis"], env=env) == "over redis"
    finally:
        stop(worker)
