"""Parsing of environment variables into settings values.

Kept separate from settings.py so the parsing rules are testable without reloading Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class EnvError(ValueError):
    pass


def env_bool(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(environ: Mapping[str, str], name: str, *, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise EnvError(f"{name} must be an integer, got {raw!r}") from None


def env_float(environ: Mapping[str, str], name: str, *, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise EnvError(f"{name} must be a number, got {raw!r}") from None


def env_list(environ: Mapping[str, str], name: str, *, default: list[str]) -> list[str]:
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def data_dir(environ: Mapping[str, str], *, base_dir: Path) -> Path:
    raw = environ.get("PICTOR_DATA_DIR", "").strip()
    path = Path(raw) if raw else base_dir / "data"
    if not path.is_absolute():
        path = base_dir / path
    return path


def secret_key(environ: Mapping[str, str], *, debug: bool, testing: bool, data: Path) -> str:
    """SECRET_KEY from the environment, else from a key file (`make run` writes one at set-up).

    Production mode (DEBUG off) refuses to start with neither: no literal key ever signs sessions there.
    """
    key = environ.get("SECRET_KEY", "").strip()
    if not key:
        key_file = Path(environ.get("PICTOR_SECRET_KEY_FILE", "").strip() or data / "secret_key")
        if key_file.is_file():
            key = key_file.read_text().strip()
    if key:
        if not debug and not testing and len(key) < 32:
            raise EnvError("SECRET_KEY must be at least 32 characters in production mode")
        return key
    if debug or testing:
        # Only for development and the test suite: sessions signed with it are worthless elsewhere.
        return "insecure-development-key-never-use-in-production"
    raise EnvError(
        "SECRET_KEY is not set. Production mode (DEBUG off) refuses to start without one; "
        "set SECRET_KEY (or PICTOR_SECRET_KEY_FILE) to a long random secret, or DEBUG=true "
        "for development. `make run` creates one in the data folder."
    )


def broker_settings(environ: Mapping[str, str], *, data: Path) -> dict:
    """Celery broker/result backend and Django cache: Redis when REDIS_URL is set, else embedded.

    The embedded default keeps a real, separate worker process: Kombu's filesystem transport passes
    messages through folders, Celery's file result backend stores results, and a file-based cache is
    shared by web and worker processes (a local-memory cache would not be).
    """
    redis_url = environ.get("REDIS_URL", "").strip()
    if redis_url:
        return {
            "embedded": False,
            "broker_url": redis_url,
            "broker_transport_options": {"visibility_timeout": 3 * 3600},
            "result_backend": redis_url,
            "cache": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                # A separate database can be given; never FLUSHDB a database the broker uses.
                "LOCATION": environ.get("PICTOR_CACHE_URL", "").strip() or redis_url,
                "KEY_PREFIX": "pictor",
                "TIMEOUT": 300,
            },
        }
    queue = data / "broker" / "queue"
    processed = data / "broker" / "processed"
    control = data / "broker" / "control"
    results = data / "broker" / "results"
    return {
        "embedded": True,
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            # Without this Kombu puts its broadcast exchange files in the current directory.
            "control_folder": str(control),
            "store_processed": False,
        },
        "result_backend": f"file://{results}",
        "cache": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(data / "cache"),
            "TIMEOUT": 300,
        },
        "folders": [queue, processed, control, results, data / "cache"],
    }
