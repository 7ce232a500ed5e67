"""What the API's schema needs beyond the views' own serializers (shared/API.md).

Request and response bodies are described by the serializers each app's API validates and renders
with (`<app>/serializers.py`). Here: how the two authentication classes look on the wire, the error
envelope every 4xx/5xx body uses, and small helpers for the @extend_schema annotations. Importing
this module (every API module does) registers the extensions before a schema is generated.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers as s

# --- authentication ------------------------------------------------------------------------------


class ProjectKeyScheme(OpenApiAuthenticationExtension):
    target_class = "projects.api_auth.ProjectKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "Pictor API key",
            "description": "A project API key: `Authorization: Bearer <api key>`. It works only on its own "
            "project (404 elsewhere). Scope `invoke` reaches only `POST .../invoke` and `GET /projects/{id}` "
            "(and the ImageNet endpoint); scope `full` reaches every endpoint.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "projects.api_auth.SessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A signed-in browser session of a project member (with the member's role); unsafe "
            "methods also need the CSRF token in `X-CSRFToken`.",
        }


# --- the error envelope --------------------------------------------------------------------------


class ErrorDetailSerializer(s.Serializer):
    code = s.CharField(
        help_text="snake_case: unauthenticated, forbidden, not_found, invalid, invalid_image, invalid_video, too_large, "
        "unsupported_media_type, throttled, no_model, conflict, method_not_allowed, server_error."
    )
    message = s.CharField(help_text="A human sentence.")
    fields = s.DictField(
        child=s.ListField(child=s.CharField()),
        required=False,
        help_text="Validation errors by parameter or field name.",
    )


class ErrorSerializer(s.Serializer):
    error = ErrorDetailSerializer()


class ItemErrorSerializer(s.Serializer):
    """One failed image of a batch."""

    error = ErrorDetailSerializer()
    filename = s.CharField()


_ERRORS = {
    400: "`invalid` (`fields` names what is wrong), `invalid_image`, or `invalid_video` (not a decodable video).",
    401: "`unauthenticated`: missing, invalid or revoked API key.",
    403: "`forbidden`: the key's scope or the member's role is too low (or the CSRF token is missing).",
    404: "`not_found`: no such project for this key or user (never revealed), or no such object in it.",
    405: "`method_not_allowed`: the path does not take this method.",
    409: "`conflict`.",
    413: "`too_large`: the image is over the size or pixel limit (a video: over its byte, duration, pixel or frame limit; "
    "more than one video in the request).",
    415: "`unsupported_media_type`: not an image format we read, or a body type we don't parse.",
    429: "`throttled`: too many requests for this key; retry after `Retry-After` seconds.",
}

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before the next request.",
)


def errors(*codes: int, **overrides) -> dict:
    """Error responses for `codes` plus the ones every endpoint can give (401, 403, 404, 405, 429).
    overrides: e.g. r409="`no_model`: ..." or r400=OpenApiResponse(...)."""
    out = {}
    for code in sorted({401, 403, 404, 405, 429, *codes}):
        value = overrides.get(f"r{code}", _ERRORS[code])
        out[code] = value if isinstance(value, OpenApiResponse) else OpenApiResponse(ErrorSerializer, description=value)
    return out


def endpoint(operation_id: str, *, tag: str, summary: str, responses: dict, parameters=(), request=None, **kwargs):
    """@extend_schema for one API operation; every operation may answer 429 with Retry-After."""
    return extend_schema(
        operation_id=operation_id,
        tags=[tag],
        summary=summary,
        parameters=[*parameters, RETRY_AFTER],
        request=request,
        responses=responses,
        **kwargs,
    )


# --- parameters ----------------------------------------------------------------------------------


def path(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description)


PROJECT = path("project_id", "The project's id.")
SAMPLE = path("sample_id", "The sample's id.")
JOB = path("job_id", "The training's id.")
MODEL = path("model_id", "The model version's id.")


def binary(media_type: str, description: str) -> dict:
    """A 200 that is a file download, not JSON."""
    return {(200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description)}


def image_errors(*codes: int, failed, **overrides) -> dict:
    """Errors of endpoints that take images: 400/413/415 carry the per-item errors when all failed."""
    out = errors(400, 413, 415, *codes, **overrides)
    for code in (400, 413, 415):
        out[code] = OpenApiResponse(
            failed,
            description=_ERRORS[code] + " When every image of a batch failed, the body also lists each one's error.",
        )
    return out


_PNG_8x8 = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8UaHBgA0wMeAAg1MCAB4nAXgllso1AAAAAElFTkSuQmCC"
IMAGE_EXAMPLES = [
    OpenApiExample("one image", value={"data": _PNG_8x8}, request_only=True, media_type="application/json"),
    OpenApiExample(
        "two images",
        value={"items": [{"data": _PNG_8x8}, {"data": _PNG_8x8}]},
        request_only=True,
        media_type="application/json",
    ),
]
NO_CONTENT = OpenApiResponse(None, description="Done.")
