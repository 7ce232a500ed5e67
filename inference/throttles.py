"""Per-key (or per-user) request rate limits, counted in the shared cache (Redis when configured)."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from projects.models import ProjectAPIKey


class KeyRateThrottle(SimpleRateThrottle):
    scope = "api"

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
