"""Request limits at the edge of the application: sizes, lengths and NUL characters.

Everything a request can make too big or too odd is refused here, before a view, a form or
PostgreSQL sees it, with the JSON error shape under ``/api/`` and a plain HTML page elsewhere:

- :class:`RequestLimitsMiddleware` (first in ``MIDDLEWARE``): URL and query string length
  (414), header size and count (431), ``Content-Length`` over ``MAX_REQUEST_BYTES`` (413,
  before a byte of the body is read under WSGI) or not a number (400), and a NUL character in
  the path, the query string or a header (400: PostgreSQL text cannot hold one).
- :func:`bad_request` (``handler400``): Django's own 400s (``RequestDataTooBig`` for a form
  field over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413, ``TooManyFieldsSent`` /
  ``TooManyFilesSent``, any other ``SuspiciousOperation``) in the same two shapes.
- :func:`limit_wsgi_body` / :class:`ASGIBodyLimit`: wrap the server's application object so a
  body is never read past ``MAX_REQUEST_BYTES``: under WSGI a chunked body (no
  ``Content-Length``) is read at most to the cap; under ASGI (where Django reads the whole body
  before any middleware runs) the cap is applied to ``Content-Length`` and to the received
  chunks, and reading stops at the cap.

The web server's own limits must be looser than these, so that the application answers with
the JSON shape; what the lead sets on the server (see README, *Request limits*):

- gunicorn: ``--limit-request-line 16384 --limit-request-field_size 16384
  --limit-request-fields 200`` (defaults 4094 / 8190 / 100 answer HTML 414/431/400 first).
- uvicorn (h11): ``--h11-max-incomplete-event-size 131072`` (h11's default, 16 KiB, is the
  whole request head; it must hold ``MAX_URL_LENGTH`` + ``MAX_HEADERS_BYTES``); with
  ``--http httptools`` the limits are the parser's (80 KiB head), looser already. uvicorn has no
  body limit of its own: wrap the ASGI application in :class:`ASGIBodyLimit`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import trans_real
from django.views import defaults

from ocrapp.errors import error_body

API_PREFIX = "/api/"


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def error_response(
    request_path: str,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> HttpResponse:
    """The JSON error shape under /api/, else a small HTML page saying the same."""
    if _is_api(request_path):
        response = JsonResponse(error_body(code, message, details), status=status)
    else:
        html = render_to_string(
            "400.html", {"status": status, "message": message, "title": _("Request refused")}
        )
        response = HttpResponse(html, status=status, content_type="text/html; charset=utf-8")
    # Set here: these answers leave before CommonMiddleware, which would set it.
    response["Content-Length"] = str(len(response.content))
    return response


def _close_after(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Ask gunicorn to close the connection instead of draining a body left unread
    (``Connection`` is hop-by-hop: only gunicorn takes it from the application)."""
    if "gunicorn.socket" in request.META:
        response["Connection"] = "close"
    return response


def _too_large_message() -> str:
    return _("The request is larger than %(limit)s bytes.") % {"limit": settings.MAX_REQUEST_BYTES}


def _has_nul(raw: str) -> bool:
    """Whether ``raw`` (a path or query string as sent, maybe %-encoded) holds a NUL."""
    return "\x00" in raw or b"\x00" in unquote_to_bytes(raw.replace("+", " "))


class RequestLimitsMiddleware:
    """Refuse oversized or NUL-carrying requests before anything reads them (see module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        # Runs before LocaleMiddleware: the answer follows the browser's language already.
        with translation.override(translation.get_language_from_request(request)):
            return self._refusal(request)

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        meta = request.META
        path = request.path
        raw_path = meta.get("RAW_URI") or meta.get("REQUEST_URI") or ""
        query = meta.get("QUERY_STRING", "")
        url_length = max(len(raw_path), len(request.path_info) + len(query) + 1)
        if url_length > settings.MAX_URL_LENGTH:
            return error_response(
                path,
                414,
                "uri_too_long",
                _("The URL is longer than %(limit)s characters.")
                % {"limit": settings.MAX_URL_LENGTH},
                {"max_length": settings.MAX_URL_LENGTH},
            )
        headers = [(k, v) for k, v in meta.items() if k.startswith("HTTP_")]
        total = sum(len(k) + len(str(v)) for k, v in headers)
        longest = max((len(k) + len(str(v)) for k, v in headers), default=0)
        if (
            longest > settings.MAX_HEADER_BYTES
            or total > settings.MAX_HEADERS_BYTES
            or len(headers) > settings.MAX_HEADER_COUNT
        ):
            return error_response(
                path,
                431,
                "header_too_large",
                _(
                    "The request headers are too large (at most %(field)s bytes per header, "
                    "%(total)s in all, %(count)s headers)."
                )
                % {
                    "field": settings.MAX_HEADER_BYTES,
                    "total": settings.MAX_HEADERS_BYTES,
                    "count": settings.MAX_HEADER_COUNT,
                },
                {"max_header_bytes": settings.MAX_HEADER_BYTES},
            )
        where = None
        if _has_nul(request.path_info) or _has_nul(raw_path):
            where = "path"
        elif _has_nul(query):
            where = "query"
        elif any("\x00" in str(v) for _k, v in headers):
            where = "header"
        if where is not None:
            return error_response(
                path,
                400,
                "invalid",
                _("The request contains a NUL character, which no field may hold."),
                {"nul_in": where},
            )
        raw_length = meta.get("CONTENT_LENGTH") or ""
        if raw_length:
            try:
                length = int(raw_length)
            except ValueError:
                length = -1
            if length < 0 or not str(raw_length).strip().isdigit():
                response = error_response(
                    path, 400, "bad_request", _("The Content-Length header is not a number.")
                )
                return _close_after(request, response)
            if length > settings.MAX_REQUEST_BYTES:
                response = error_response(
                    path,
                    413,
                    "request_too_large",
                    _too_large_message(),
                    {"max_bytes": settings.MAX_REQUEST_BYTES},
                )
                return _close_after(request, response)
        return None


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: Django's own refusals of a request, as JSON under /api/."""
    if isinstance(exception, RequestDataTooBig):
        return error_response(
            request.path,
            413,
            "request_too_large",
            _("A form field is larger than %(limit)s bytes.")
            % {"limit": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            {"max_field_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return error_response(
            request.path,
            400,
            "too_many_fields",
            _("The form has too many fields (at most %(limit)s).")
            % {"limit": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS},
            {"max_fields": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS},
        )
    if isinstance(exception, SuspiciousOperation):
        return error_response(
            request.path, 400, "bad_request", _("The request was refused as malformed.")
        )
    return error_response(request.path, 400, "bad_request", _("Bad request."))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: an unknown URL under /api/ answers in the JSON shape; pages keep the
    site's 404 page."""
    if _is_api(request.path):
        return error_response(
            request.path, 404, "not_found", _("There is no API endpoint at this address.")
        )
    return defaults.page_not_found(request, exception)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``: a refusal outside DRF (e.g. a PermissionDenied raised in a plain view)
    answers in the JSON shape under /api/."""
    if _is_api(request.path):
        return error_response(request.path, 403, "permission_denied", _("You may not do this."))
    return defaults.permission_denied(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: even an unexpected failure answers in the JSON shape under /api/."""
    if _is_api(request.path):
        return error_response(
            request.path, 500, "server_error", _("The server failed to answer this request.")
        )
    return defaults.server_error(request)


# --- body cap around the server's application object -----------------------------------------


def _language(accept_language: str) -> str:
    """The supported language an ``Accept-Language`` header asks for (else the default)."""
    for code, _q in trans_real.parse_accept_lang_header(accept_language or ""):
        if code == "*":
            break
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _too_large_body(path: str, accept_language: str) -> bytes:
    """The 413 of the body caps, rendered without a Django request."""
    cap = settings.MAX_REQUEST_BYTES
    with translation.override(_language(accept_language)):
        message = _too_large_message()
        if _is_api(path):
            body = error_body("request_too_large", message, {"max_bytes": cap})
            return json.dumps(body).encode()
        html = render_to_string(
            "400.html", {"status": 413, "message": message, "title": _("Request refused")}
        )
        return html.encode()


def _content_type(path: str) -> str:
    return "application/json" if _is_api(path) else "text/html; charset=utf-8"


_CHUNK = 64 * 1024


def limit_wsgi_body(app: Callable) -> Callable:
    """Wrap a WSGI application so a body without ``Content-Length`` (chunked) is read at most
    to ``MAX_REQUEST_BYTES``: a bigger one is a 413 after the cap, a smaller one is handed on
    with its length (Django alone reads no byte of a body without ``Content-Length``).
    A declared ``Content-Length`` is checked by :class:`RequestLimitsMiddleware` before Django
    reads the body."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            cap = settings.MAX_REQUEST_BYTES
            stream, buf, size = environ["wsgi.input"], io.BytesIO(), 0
            while True:
                chunk = stream.read(min(_CHUNK, cap + 1 - size))
                if not chunk:
                    break
                buf.write(chunk)
                size += len(chunk)
                if size > cap:
                    path = environ.get("PATH_INFO", "")
                    body = _too_large_body(path, environ.get("HTTP_ACCEPT_LANGUAGE", ""))
                    headers = [
                        ("Content-Type", _content_type(path)),
                        ("Content-Length", str(len(body))),
                    ]
                    if "gunicorn.socket" in environ:  # do not drain the rest: close
                        headers.append(("Connection", "close"))
                    start_response("413 Content Too Large", headers)
                    return [body]
            environ["CONTENT_LENGTH"] = str(size)
            environ["wsgi.input"] = io.BytesIO(buf.getvalue())
        return app(environ, start_response)

    return application


class ASGIBodyLimit:
    """Wrap an ASGI application (Django's ``get_asgi_application()``) so an HTTP body is never
    received past ``MAX_REQUEST_BYTES``: a ``Content-Length`` over the cap is answered 413
    before the body is read; a body that grows past it (chunked, or longer than declared)
    stops being read there (Django sees the client leave and answers nothing) and this
    wrapper answers 413 instead."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = settings.MAX_REQUEST_BYTES
        path = scope.get("path", "")
        declared, accept = None, ""
        for name, value in scope.get("headers") or ():
            name = name.lower()
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1  # RequestLimitsMiddleware answers 400
            elif name == b"accept-language":
                accept = value.decode("latin-1")
        if declared is not None and declared > cap:
            await self._refuse(send, path, accept)
            return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> dict:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > cap:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if state["over"] and not state["started"]:
            await self._refuse(send, path, accept)

    @staticmethod
    async def _refuse(send: Callable, path: str, accept_language: str) -> None:
        body = await sync_to_async(_too_large_body)(path, accept_language)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", _content_type(path).encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
