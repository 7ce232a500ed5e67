"""Every API response a test receives is checked against the schema the server serves.

One hook on Django's test client (which DRF's APIClient builds on): any response under /api/v1/
(but the schema and docs themselves) is validated with openapi-core against the OpenAPI document
generated from the same serializers the views use. A response the schema does not describe fails
the test that received it.
"""

from __future__ import annotations

import functools
import json

from django.test import client as django_client

_EXEMPT = ("/api/v1/schema", "/api/v1/docs")
_original_request = django_client.Client.request


class NonConformingResponse(AssertionError):
    pass


@functools.cache
def document() -> dict:
    """The OpenAPI document as the server serves it (through JSON: the generator holds lazy strings)."""
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


@functools.cache
def openapi():
    from openapi_core import Config, OpenAPI

    # Downloads are `type: string, format: binary`: read their bytes as a string of the same length.
    as_text = {
        m: (lambda data, **kw: data.decode("latin-1") if isinstance(data, bytes) else data)
        for m in (
            "application/zip",
            "application/octet-stream",
            "text/csv",
            "application/x-ndjson",
            "image/*",
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/gif",
            "image/bmp",
            "image/tiff",
        )
    }
    return OpenAPI.from_dict(document(), config=Config(extra_media_type_deserializers=as_text))


def response_errors(response) -> list[str]:
    """The ways `response` (of a test client request) disagrees with the schema; [] if it conforms."""
    from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

    class _Request(DjangoOpenAPIRequest):
        # Only the response is validated: the request's body may already have been parsed away.
        @property
        def body(self) -> bytes:
            return b""

    request = response.wsgi_request
    try:
        result = openapi().unmarshal_response(_Request(request), DjangoOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound):
        # No such route or method: only the router's own 404/405 may answer it.
        return [] if response.status_code in (404, 405) else [f"{request.method} {request.path} is not in the schema"]
    if any(isinstance(e, (PathNotFound, OperationNotFound)) for e in result.errors):
        return [] if response.status_code in (404, 405) else [f"{request.method} {request.path} is not in the schema"]
    errors = []
    for error in result.errors:
        detail = "; ".join(str(e) for e in getattr(error, "schema_errors", ()) or ()) or str(error)
        errors.append(f"{type(error).__name__}: {detail}")
    return errors


def check(response) -> None:
    request = getattr(response, "wsgi_request", None)
    if request is None or not request.path.startswith("/api/v1/") or request.path.startswith(_EXEMPT):
        return
    errors = response_errors(response)
    if errors:
        body = b"" if getattr(response, "streaming", False) else response.content[:500]
        raise NonConformingResponse(
            f"{request.method} {request.get_full_path()} → {response.status_code} does not match the schema:\n  "
            + "\n  ".join(errors)
            + f"\n  body: {body!r}"
        )


def _checked_request(self, **request):
    response = _original_request(self, **request)
    check(response)
    return response


def install() -> None:
    django_client.Client.request = _checked_request
