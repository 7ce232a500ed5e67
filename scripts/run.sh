#!/usr/bin/env bash
# Runs Pictor on the embedded default (SQLite, filesystem broker; no Redis or PostgreSQL needed)
# unless DATABASE_URL / REDIS_URL say otherwise: web server, Celery workers and beat together.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export DJANGO_SETTINGS_MODULE=config.settings
DATA_DIR="${PICTOR_DATA_DIR:-data}"
mkdir -p "$DATA_DIR"
if [ -z "${SECRET_KEY:-}" ] && [ ! -s "$DATA_DIR/secret_key" ]; then
  # A real random key, made once and kept beside the data it protects.
  (umask 077 && $BIN/python -c 'import secrets; print(secrets.token_urlsafe(50))' > "$DATA_DIR/secret_key")
fi
$BIN/python manage.py migrate --noinput
$BIN/python manage.py bootstrap
$BIN/python manage.py collectstatic --noinput -v 0
export PICTOR_BIND="${PICTOR_BIND:-127.0.0.1:8000}"
echo "Pictor is starting on http://${PICTOR_BIND}/ (Ctrl-C stops web and workers)"
exec $BIN/honcho -f Procfile start
