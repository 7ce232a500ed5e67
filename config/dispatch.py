"""Queueing background work without letting a broker or cache outage fail the user's request.

Everything dispatched from a web request runs after its transaction committed: the user's data is
already safe in the database. If Redis is down at that moment we log it, remember it (the UI shows
a warning), and the periodic sweeps queue the work again once the broker is back.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)

# Monotonic time of the last failed dispatch in this process (0: none), for the UI's warning.
_last_failure = 0.0


def cache_add(key: str, value, timeout: float) -> bool:
    """cache.add that treats an unreachable cache as "nothing pending" (so work is attempted)."""
    try:
        return bool(cache.add(key, value, timeout=timeout))
    except Exception:
        log.warning("cache unreachable while adding %s", key, exc_info=True)
        return True


def cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception:
        log.warning("cache unreachable while deleting %s", key, exc_info=True)


def enqueue(task: str, *, args: list, release_key: str | None = None, **options) -> bool:
    """Send a Celery task by name; on a broker error log it, free its coalescing key, return False.

    By name, so the modules that start work never import the task modules that call back into them.
    """
    global _last_failure
    try:
        task_get(task).apply_async(args=args, **options)
        return True
    except Exception:
        _last_failure = time.monotonic()
        log.exception("could not queue %s%s; a periodic sweep will retry", task, args)
        if release_key:
            cache_delete(release_key)
        return False


def task_get(name: str):
    """The registered task called `name` ("app.tasks.function"), importing its module on first use
    (a web process never runs Celery's autodiscovery)."""
    import importlib

    from config.celery import app

    if name not in app.tasks:
        importlib.import_module(name.rsplit(".", 1)[0])
    return app.tasks[name]


def _once_key(key: str) -> str:
    return f"once:{key}"


def enqueue_once(task: str, *, key: str, args: list, ttl: float, **options) -> bool:
    """Queue `task` after the current transaction commits unless the same `key` is already waiting.

    The key lives in the cache for at most `ttl` seconds (a lost task cannot block its step for
    longer); the task frees it when it starts (release_once), so an event during its run queues one more.
    """
    from django.db import transaction

    if not cache_add(_once_key(key), 1, timeout=ttl):
        return False
    transaction.on_commit(lambda: enqueue(task, args=args, release_key=_once_key(key), **options))
    return True


def release_once(key: str) -> None:
    cache_delete(_once_key(key))


def broker_recently_failed(window: float = 120.0) -> bool:
    return _last_failure > 0 and time.monotonic() - _last_failure < window
