"""Typed application errors and the one DRF exception handler that renders them.

Every API error is JSON: ``{"error": {"code": str, "message": str, "details": {...}}}``.
Messages are in the request's language (``LocaleMiddleware``: the language cookie set by the
language switch, else ``Accept-Language``): ``ApplicationError`` messages are gettext'd where
they are raised, DRF's own messages are translated by DRF.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A domain rule was broken; carries an HTTP status for the API layer."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        if status_code is not None:
            self.status_code = status_code


class NotFoundError(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND


class PermissionDeniedError(ApplicationError, PermissionDenied):
    """The user lacks a permission (``ocrapp.roles``): 403, as the JSON error in the API and
    as the 403 page in the HTML views (it is also Django's ``PermissionDenied``)."""

    status_code = status.HTTP_403_FORBIDDEN

    def __init__(self, permission: str = "", message: str | None = None) -> None:
        super().__init__(
            "permission_denied",
            message or _("You do not have permission to do this."),
            details={"permission": permission} if permission else None,
        )


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _flatten_message(value)
            return text if key == "non_field_errors" else f"{key}: {text}"
        return _("Invalid request.")
    if isinstance(detail, list) and detail:
        return _flatten_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message = "invalid", _flatten_message(exc.detail)
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        code = getattr(exc, "default_code", "error")
        detail = getattr(exc, "detail", str(exc))
        message, details = str(detail), {}
        if isinstance(exc, exceptions.NotAuthenticated):
            code = "not_authenticated"
        elif isinstance(exc, exceptions.AuthenticationFailed):
            code = "authentication_failed"
    response.data = error_body(code, message, details)
    return response
