"""OpenAPI schema: every error answer documented in one place (a drf-spectacular hook).

Views declare only their success responses. ``document_errors`` (``POSTPROCESSING_HOOKS``)
adds the ``Error`` component (``ocrapp.errors.error_body``: ``{"error": {"code", "message",
"details"}}``) and, to every operation, the error statuses it can answer, derived from what
the operation is, so that new views and new refusals (rate limits, oversize requests) are
documented without touching each view:

- every operation: 406 (an ``Accept`` the API cannot render), 414 / 431 (request line or
  headers too long) and 429 (rate limited);
- operations with parameters or a request body: 400 (bad input);
- authenticated operations (``security`` names a scheme): 401 and 403;
- operations with a path parameter: 404 (unknown, or outside the caller's scope);
- writes (POST, PUT, PATCH, DELETE): 409 (conflict with the stored state);
- operations with a request body: 413 (request or file too large) and 415 (unsupported
  ``Content-Type``);
- operations that enqueue a read (``ENQUEUES``): 503 (queue or image store unavailable).

A response a view documents itself is kept; an error status it declares without a body
(``extend_schema(responses={503: OpenApiResponse(description=...)})``, e.g. a readiness
check) gets the ``Error`` body.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

ERROR_COMPONENT = "Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}

# Operations whose answer can be "the queue or the image store is down".
ENQUEUES = frozenset({"captures_create", "captures_retry"})

_DESCRIPTIONS = {
    "400": _("Bad input (code invalid, or a specific code such as unknown_product_type)."),
    "401": _(
        "No credentials, or a bad or revoked token (not_authenticated, authentication_failed)."
    ),
    "403": _(
        "No permission, or a station that is not yours (permission_denied, station_mismatch)."
    ),
    "404": _("Not found, or outside your scope (not_found)."),
    "406": _("The Accept header names no type the API can answer with (not_acceptable)."),
    "409": _("Conflicts with the stored state (e.g. idempotency_key_reused, stale_read)."),
    "413": _("The request or the uploaded file is too large (file_too_large)."),
    "414": _("The request line (URL) is too long."),
    "415": _("Unsupported Content-Type (unsupported_media_type)."),
    "429": _("Too many requests; retry after the Retry-After header's seconds (throttled)."),
    "431": _("The request's header fields are too large."),
    "503": _("The reading queue or the image store is unavailable; nothing was stored."),
}

_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": _("Seconds to wait before retrying."),
    }
}


def error_component() -> dict[str, Any]:
    """The JSON schema of ``ocrapp.errors.error_body``."""
    return {
        "type": "object",
        "description": _("Every API error: a stable code, a message in the request's language."),
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object", "additionalProperties": True},
                },
                "required": ["code", "message", "details"],
            }
        },
        "required": ["error"],
    }


def error_statuses(operation: dict[str, Any], *, path: str, method: str) -> list[str]:
    """The error statuses ``operation`` (an OpenAPI operation object) can answer."""
    statuses = {"406", "414", "429", "431"}
    parameters = operation.get("parameters") or ()
    if parameters or "requestBody" in operation:
        statuses.add("400")
    if any(requirement for requirement in operation.get("security") or ()):
        statuses |= {"401", "403"}
    if "{" in path or any(p.get("in") == "path" for p in parameters):
        statuses.add("404")
    if method in {"post", "put", "patch", "delete"}:
        statuses.add("409")
    if "requestBody" in operation:
        statuses |= {"413", "415"}
    if operation.get("operationId") in ENQUEUES:
        statuses.add("503")
    return sorted(statuses)


def error_response(status: str) -> dict[str, Any]:
    response = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": dict(ERROR_REF)}},
    }
    if status == "429":
        response["headers"] = dict(_RETRY_AFTER)
    return response


def document_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: see the module docstring."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = error_component()
    for path, item in (result.get("paths") or {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in error_statuses(operation, path=path, method=method):
                responses.setdefault(status, error_response(status))
            for status, response in responses.items():
                if str(status)[:1] in "45" and not response.get("content"):
                    response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
    return result
