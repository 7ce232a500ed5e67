"""Atomic fixed-window counters: Redis INCR + EXPIRE when the cache is Redis, else one SQL UPSERT.

Both are atomic across processes and threads (gunicorn workers, several web machines on Redis).
"""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction


def _uses_redis() -> bool:
    backend = settings.PICTOR_THROTTLE_STORE
    if backend != "auto":
        return backend == "redis"
    return settings.CACHES["default"]["BACKEND"].endswith("RedisCache")


def _redis_client(wkey: str):
    """Django's RedisCache client for ``wkey``, built once per cache backend instance (Django keeps one
    per thread) and kept on it, so it lives and dies with it: the cache builds a new redis-py client
    (with its ~170 response callbacks) on every call otherwise."""
    backend = cache._cache
    client = getattr(backend, "_pictor_write_client", None)
    if client is None:
        client = backend._pictor_write_client = backend.get_client(wkey, write=True)
    return client


def rate_hit(*, key: str, period: float) -> tuple[int, float]:
    """Count one hit for key in the current window; returns (hits so far, seconds the window has left)."""
    now = time.time()
    window = int(now // period)
    ends = (window + 1) * period
    wkey = f"{key}:{window}"
    if _uses_redis():
        client = _redis_client(wkey)  # Django's RedisCache: a redis-py client
        name = cache.make_and_validate_key(wkey)
        pipe = client.pipeline()
        pipe.incr(name)
        pipe.expireat(name, int(ends) + 1)
        n = pipe.execute()[0]
        return int(n), max(ends - now, 0.0)
    from inference.models import RateCounter

    table = connection.ops.quote_name(RateCounter._meta.db_table)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {table} (key, n, expires) VALUES (%s, 1, %s) "
                f"ON CONFLICT (key) DO UPDATE SET n = {table}.n + 1 RETURNING n",
                [wkey, ends],
            )
            n = cur.fetchone()[0]
    if n == 1 and random.random() < 0.05:  # now and then, drop finished windows
        RateCounter.objects.filter(expires__lt=now).delete()
    return int(n), max(ends - now, 0.0)
