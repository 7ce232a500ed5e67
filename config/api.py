"""Shared plumbing of the public REST API: the error envelope, pagination, 404/500 under /api/.

Every 4xx/5xx body is {"error": {"code", "message"}} (+ "fields" for validation errors).
"""

from __future__ import annotations

import functools
import logging

from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


@functools.cache
def _bound(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    instance = serializer_class()
    instance.fields  # noqa: B018 - bind the (deep-copied) fields once, before threads share it
    return instance


def render(serializer_class: type[serializers.Serializer], instance) -> dict:
    """``serializer_class(instance).data`` for a context-free output serializer, from one instance per
    class and process: DRF deep-copies every declared field each time a serializer is built, which
    costs ~10x the rendering itself on the invoke path. Rendering keeps no state on the serializer,
    so the shared instance is safe across threads."""
    return _bound(serializer_class).to_representation(instance)


class ApiError(exceptions.APIException):
    """Raise with a code from the contract: ApiError("no_model", "Nothing is deployed yet.", 409)."""

    def __init__(self, code: str, message: str, status_code: int = 400, fields: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.fields = fields


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return body


def error_response(code: str, message: str, status_code: int, fields: dict | None = None, headers=None) -> Response:
    return Response(error_body(code, message, fields), status=status_code, headers=headers)


_CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "invalid",
    exceptions.ValidationError: "invalid",
}


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(d) for d in detail)
    return str(detail)


def _fields(detail) -> dict | None:
    if isinstance(detail, dict):
        return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
    return None


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Not allowed.")
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DataError):
        # A value the database refuses to store or compare (PostgreSQL: a NUL character in text):
        # the input is at fault, so it is a 400, not a 500.
        log.warning("API input refused by the database: %s", exc)
        exc = ApiError("invalid", "The request contains a value that cannot be stored (for example a NUL character).")
    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("unhandled API error", exc_info=exc)
        return error_response("server_error", "Something went wrong on the server; it was logged.", 500)
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, exc.message, exc.fields)
        return response
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), "error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(detail)
        message = "The request is not valid. " + _flatten(detail) if fields else _flatten(detail)
        response.data = error_body("invalid", message.strip(), fields)
    else:
        response.data = error_body(code, _flatten(detail))
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(int(exc.wait + 0.999))
    return response


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.page.paginator.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def handler404(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "Something went wrong on the server; it was logged."), status=500
        )
    from django.views.defaults import server_error

    return server_error(request)


def handler403(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("forbidden", str(exception) or "Not allowed."), status=403)
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)


def handler400(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("invalid", "Bad request."), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)
