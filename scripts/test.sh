#!/usr/bin/env bash
# Sets up what the test suite needs (PostgreSQL, Redis, Chromium) and runs it.
# On CI (CI=true) a missing service is an error; elsewhere the suite falls back and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

pg_up() { $BIN/python - <<'PY' 2>/dev/null
import psycopg
psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
PY
}
redis_up() { $BIN/python -c 'import redis; redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).ping()' 2>/dev/null; }

if ! pg_up && command -v pg_ctlcluster >/dev/null; then
  echo "PostgreSQL is not answering; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  sleep 2
fi
if ! redis_up && command -v redis-server >/dev/null; then
  echo "Redis is not answering; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/pictor-redis.log || true
  sleep 1
fi

if pg_up; then
  export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
  # A test database left behind by an interrupted run (and processes still connected to it, such as
  # a killed run's worker) would stop pytest-django from creating a fresh one: clear it first.
  $BIN/python - <<'PY' || echo "WARNING: could not clear a leftover test database"
import os
from urllib.parse import urlparse

import psycopg

url = urlparse(os.environ["DATABASE_URL"])
name = os.environ.get("PICTOR_TEST_DB_NAME") or "test_" + url.path.lstrip("/")
admin = url._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])
    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
PY
else
  [ "${CI:-}" = "true" ] && { echo "ERROR: PostgreSQL is required on CI and is not reachable"; exit 1; }
  echo "WARNING: PostgreSQL is not reachable; the suite runs on SQLite and PostgreSQL-only tests skip"
  unset DATABASE_URL
fi
if redis_up; then
  export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
  export PICTOR_TEST_REDIS=1
else
  [ "${CI:-}" = "true" ] && { echo "ERROR: Redis is required on CI and is not reachable"; exit 1; }
  echo "WARNING: Redis is not reachable; Redis tests skip"
  unset REDIS_URL
fi

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's Chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium"
  fi
fi
if ! command -v chromium >/dev/null; then
  [ "${CI:-}" = "true" ] && { echo "ERROR: chromium is required on CI for the browser tests"; exit 1; }
  echo "WARNING: chromium is missing; browser tests skip (apt-get install chromium)"
fi

# Static checks first: lint, and the layers/no-cycles contracts of pyproject.toml [tool.importlinter].
echo "ruff check, ruff format --check"; $BIN/ruff check --quiet . || exit 1
$BIN/ruff format --check --quiet . || { echo "ERROR: run .venv/bin/ruff format ."; exit 1; }
echo "import-linter"; $BIN/lint-imports --no-cache >/tmp/pictor-lint-imports.log 2>&1 || { cat /tmp/pictor-lint-imports.log; exit 1; }
grep -E "Contracts:" /tmp/pictor-lint-imports.log

export PICTOR_DATA_DIR="${PICTOR_TEST_DATA_DIR:-$(mktemp -d /tmp/pictor-test-XXXXXX)}"
unset SECRET_KEY DEBUG
exec $BIN/python -m pytest "$@"
