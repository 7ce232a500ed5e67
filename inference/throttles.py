"""Per-key (or per-user) request rate limits, counted atomically (inference.ratelimit)."""

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from inference.ratelimit import rate_hit
from projects.models import ProjectAPIKey

log = logging.getLogger(__name__)


class KeyRateThrottle(SimpleRateThrottle):
    scope = "api"
    _wait: float | None = None

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view)
        if key is None or self.num_requests is None:
            return True
        try:
            hits, left = rate_hit(key=key, period=self.duration)
        except Exception:
            # The counter lives in Redis or the database: while it is unreachable we serve rather than fail.
            log.warning("throttle store unreachable; allowing the request", exc_info=True)
            return True
        self._wait = left
        return hits <= self.num_requests

    def wait(self):
        return self._wait

    def get_rate(self):
        # Read at request time (not import time) so operators and tests can change it.
        return settings.PICTOR_API_RATE

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ProjectAPIKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"


def auth_failure_hit(request) -> float | None:
    """Count a failed API authentication (invalid key) for the client address: the seconds to wait
    once the address is over PICTOR_AUTH_FAIL_RATE, else None."""
    throttle = SimpleRateThrottle.__new__(SimpleRateThrottle)  # for parse_rate and get_ident only
    num, period = throttle.parse_rate(settings.PICTOR_AUTH_FAIL_RATE)
    try:
        hits, left = rate_hit(key=f"throttle:authfail:ip:{throttle.get_ident(request)}", period=period)
    except Exception:
        log.warning("throttle store unreachable; not counting a failed authentication", exc_info=True)
        return None
    return left if hits > num else None
