"""Request middleware: a request id, the log context, one log line and the request metrics.

``RequestContextMiddleware`` (first in ``MIDDLEWARE``, so it times everything):

- takes the request id from a well-formed ``X-Request-ID`` header (a proxy's) or makes one, and
  returns it in the ``X-Request-ID`` response header;
- binds ``request_id`` (and ``capture_id`` when the URL names a capture) in ``ocrapp.logctx``
  for every log line written while the request runs;
- counts the request and its latency by view (the URL name, never the raw path: bounded label
  values) in ``ocrapp.metrics``, and logs one ``ocrapp.request`` line (method, path, view,
  status, duration) — except for the probes and ``/metrics``, which would drown the log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.http import HttpRequest, HttpResponse

from ocrapp import logctx, metrics

log = logging.getLogger("ocrapp.request")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
QUIET_VIEWS = frozenset({"healthz", "readyz", "metrics"})


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or match.url_name or "unnamed"


class RequestContextMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = logctx.bind(request_id=request_id)
        t0 = time.perf_counter()
        try:
            response = self.get_response(request)
            status = response.status_code
        except Exception:  # Django turns it into a 500 above us; count it as one
            self._done(request, 500, time.perf_counter() - t0)
            logctx.reset(token)
            raise
        self._done(request, status, time.perf_counter() - t0)
        response.headers.setdefault("X-Request-ID", request_id)
        logctx.reset(token)
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> None:
        capture_id = view_kwargs.get("capture_id")
        if capture_id:
            logctx.bind(capture_id=capture_id)  # undone with the request's token
        return None

    @staticmethod
    def _done(request: HttpRequest, status: int, seconds: float) -> None:
        view = _view_name(request)
        metrics.observe_request(
            view=view, method=request.method or "", status=status, seconds=seconds
        )
        if view in QUIET_VIEWS and status < 500:
            return
        log.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            status,
            seconds * 1000,
            extra={"view": view, "status": status, "duration_ms": round(seconds * 1000, 1)},
        )
