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


def enqueue(task, *, args: list, release_key: str | None = None, **options) -> bool:
    """Send a Celery task; on a broker error log it, free its coalescing key and return False."""
    global _last_failure
    try:
        task.apply_async(args=args, **options)
        return True
    except Exception:
        _last_failure = time.monotonic()
        log.exception("could not queue %s%s; a periodic sweep will retry", task.name, args)
        if release_key:
            cache_delete(release_key)
        return False


def broker_recently_failed(window: float = 120.0) -> bool:
    return _last_failure > 0 and time.monotonic() - _last_failure < window
