"""The API throttle on the embedded default, as `make run` serves it: gunicorn with 2 workers x 4
threads, SQLite, a file cache and no Redis. Ten parallel clients share one key; the counter is one
SQL upsert per request, so exactly the limit passes (slack 0) in the window."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.procs import BIN, REPO, clean_env, free_port, start, stop, wait_http

LIMIT = 20


def _manage(*args: str, env: dict) -> str:
    r = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


@pytest.mark.slow
def test_it_holds_the_rate_limit_across_gunicorn_workers_on_sqlite(tmp_path):
    port = free_port()
    env = clean_env(
        PICTOR_DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="t" * 50,
        PICTOR_ADMIN_PASSWORD="throttle-admin-pass-1",
        PICTOR_API_RATE=f"{LIMIT}/day",
    )
    _manage("migrate", "--noinput", "-v", "0", env=env)
    _manage("bootstrap", env=env)
    project = _manage("project", "create", "--name", "Throttle", "--owner", "admin", env=env).splitlines()[-1]
    key = _manage("apikey", "create", "--project", project, "--scope", "invoke", env=env).splitlines()[-1]
    log = tmp_path / "web.log"
    proc = start(
        [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"],
        env=env,
        log=log,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/accounts/login/", timeout=60, proc=proc, log=log)
        url = f"http://127.0.0.1:{port}/api/v1/projects/{project}"

        def client(_):
            with requests.Session() as s:
                s.headers["Authorization"] = f"Bearer {key}"
                return [s.get(url, timeout=30).status_code for _ in range(6)]

        with ThreadPoolExecutor(10) as pool:
            codes = [c for batch in pool.map(client, range(10)) for c in batch]
    finally:
        stop(proc)
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) == LIMIT, (codes.count(200), log.read_text()[-3000:])
