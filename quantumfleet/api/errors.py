"""One JSON shape for every API error.

Every error body has ``detail`` (a sentence for people) and ``code`` (a stable string for
programs). Validation errors add ``errors``: a map from the field's dotted path
(``email``, ``points.3.ts``) to its messages, so a client can point at the bad field.
``detail`` keeps the key the seed's FastAPI clients already read.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler that rewrites every error into the project's error shape."""
    # DRF answers Django's own 404 and 403 too; give them the API's exception types.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()

    response = exception_handler(exc, context)
    if response is None:
        # Not an API error: Django's 500 handler answers, in JSON too (quantumfleet.views).
        return None

    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_error_body(exc.detail)
    elif isinstance(exc, exceptions.APIException):
        response.data = api_error_body(exc)
    return response


def error_response(exc: exceptions.APIException) -> HttpResponse:
    """The error shape of ``json_exception_handler``, for views answering without DRF."""
    if isinstance(exc, exceptions.ValidationError):
        body = validation_error_body(exc.detail)
    else:
        body = api_error_body(exc)
    return HttpResponse(orjson.dumps(body), status=exc.status_code, content_type="application/json")


def validation_error_body(detail: Any) -> dict[str, Any]:
    errors = flatten_errors(detail)
    if errors:
        field, messages = next(iter(errors.items()))
        summary = messages[0] if field == "non_field_errors" else f"{field}: {messages[0]}"
    else:
        summary = "Invalid input."
    return {"detail": summary, "code": "invalid", "errors": errors}


def api_error_body(exc: exceptions.APIException) -> dict[str, Any]:
    detail: Any = exc.detail
    code = exc.default_code
    # simplejwt raises with a dict detail: {"detail": ..., "code": ..., "messages": [...]}
    if isinstance(detail, dict):
        code = str(detail.get("code", code))
        detail = detail.get("detail", exc.default_detail)
    elif isinstance(detail, exceptions.ErrorDetail):
        code = detail.code or code
    body: dict[str, Any] = {"detail": str(detail), "code": str(code)}
    field = getattr(exc, "field", None)
    if field:
        body["errors"] = {field: [str(detail)]}
    return body


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{"a.0.b": ["message", ...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            flat.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            if detail:
                flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                flat.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


class FieldError(exceptions.APIException):
    """A 400 about one named input (a header, a path segment) outside any serializer."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(detail=message, code=code)
        self.field = field


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is larger than this server accepts."
