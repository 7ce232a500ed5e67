"""Work that must happen for a request but need not delay its answer (e.g. counting an API key's use).

`after_response(request, fn)` runs `fn` once the response has been sent: the WSGI server closes the
response after writing its last byte, and Django runs the response's closers then (before
`request_finished` closes the database connection). Without AfterResponseMiddleware installed (a view
called directly), `fn` runs at once, so the work is never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_PENDING = "_pictor_after_response"


def after_response(request, fn: Callable[[], None]) -> None:
    """Run fn after the response to `request` (a Django HttpRequest or a DRF Request) is sent."""
    django_request = getattr(request, "_request", request)
    pending = getattr(django_request, _PENDING, None)
    if pending is None:
        fn()
        return
    pending.append(fn)


def _guarded(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # the answer is out: log, never lose the next request to it
            log.exception("after-response work failed")

    return run


class AfterResponseMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        pending: list[Callable[[], None]] = []
        setattr(request, _PENDING, pending)
        response = self.get_response(request)
        response._resource_closers.extend(_guarded(fn) for fn in pending)
        setattr(request, _PENDING, None)  # anything later runs at once
        return response
