"""Per-key (or per-user) request rate limits, counted in the shared cache (Redis when configured)."""

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from projects.models import ProjectAPIKey

log = logging.getLogger(__name__)


class KeyRateThrottle(SimpleRateThrottle):
    scope = "api"

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:
            # The rate counter lives in Redis: while it is unreachable we serve rather than fail.
            log.warning("throttle cache unreachable; allowing the request", exc_info=True)
            return True

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
