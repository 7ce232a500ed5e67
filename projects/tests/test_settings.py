import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import env as E

REPO = Path(__file__).resolve().parents[2]


def test_env_bool_int_list_parse_and_reject_garbage():
    assert E.env_bool({"X": "Yes"}, "X", default=False) is True
    assert E.env_bool({"X": "0"}, "X", default=True) is False
    assert E.env_bool({}, "X", default=True) is True
    with pytest.raises(E.EnvError, match="boolean"):
        E.env_bool({"X": "maybe"}, "X", default=False)
    assert E.env_int({"N": "12"}, "N", default=1) == 12
    with pytest.raises(E.EnvError, match="integer"):
        E.env_int({"N": "12MB"}, "N", default=1)
    assert E.env_list({"H": "a.org, b.org,,"}, "H", default=[]) == ["a.org", "b.org"]


def test_data_dir_defaults_to_data_under_the_repo_and_resolves_relative_paths(tmp_path):
    assert E.data_dir({}, base_dir=tmp_path) == tmp_path / "data"
    assert E.data_dir({"PICTOR_DATA_DIR": "var/x"}, base_dir=tmp_path) == tmp_path / "var/x"
    assert E.data_dir({"PICTOR_DATA_DIR": "/srv/p"}, base_dir=tmp_path) == Path("/srv/p")


def test_production_mode_refuses_to_start_without_a_real_secret(tmp_path):
    with pytest.raises(E.EnvError, match="SECRET_KEY is not set"):
        E.secret_key({}, debug=False, testing=False, data=tmp_path)
    with pytest.raises(E.EnvError, match="at least 32"):
        E.secret_key({"SECRET_KEY": "short"}, debug=False, testing=False, data=tmp_path)
    assert E.secret_key({}, debug=True, testing=False, data=tmp_path).startswith("insecure")
    (tmp_path / "secret_key").write_text("k" * 50 + "\n")
    assert E.secret_key({}, debug=False, testing=False, data=tmp_path) == "k" * 50


def test_broker_is_embedded_without_redis_and_redis_with_it(tmp_path):
    embedded = E.broker_settings({}, data=tmp_path)
    assert embedded["broker_url"] == "filesystem://"
    assert embedded["result_backend"].startswith("file://")
    assert embedded["cache"]["BACKEND"].endswith("FileBasedCache")
    redis = E.broker_settings({"REDIS_URL": "redis://127.0.0.1:6379/3"}, data=tmp_path)
    assert redis["broker_url"] == redis["result_backend"] == "redis://127.0.0.1:6379/3"
    assert redis["cache"]["BACKEND"].endswith("RedisCache")


def _settings_in_subprocess(environ: dict, expr: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTEST_VERSION", "SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(environ)
    code = f"import django; from django.conf import settings; django.setup(); print({expr})"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_django_itself_refuses_production_mode_without_secret(tmp_path):
    result = _settings_in_subprocess({"PICTOR_DATA_DIR": str(tmp_path)}, "1")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_settings_read_database_url_and_redis_url(tmp_path):
    result = _settings_in_subprocess(
        {
            "PICTOR_DATA_DIR": str(tmp_path),
            "SECRET_KEY": "s" * 40,
            "DATABASE_URL": "postgres://u:p@db.example:5433/pictor",
            "REDIS_URL": "redis://cache.example:6380/2",
            "ALLOWED_HOSTS": "pictor.example,localhost",
        },
        "settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['HOST'], "
        "settings.CELERY_BROKER_URL, settings.CACHES['default']['BACKEND'], settings.ALLOWED_HOSTS, settings.DEBUG",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "postgresql" in out and "db.example" in out and "redis://cache.example:6380/2" in out
    assert "RedisCache" in out and "pictor.example" in out and "False" in out


def test_embedded_default_uses_sqlite_in_the_data_dir(tmp_path):
    result = _settings_in_subprocess(
        {"PICTOR_DATA_DIR": str(tmp_path), "DEBUG": "true"},
        "settings.DATABASES['default']['NAME'], settings.CELERY_BROKER_URL, settings.PICTOR_EMBEDDED",
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "pictor.sqlite3") in result.stdout
    assert "filesystem://" in result.stdout and "True" in result.stdout
