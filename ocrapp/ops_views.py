"""Operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (README "Operations").

Plain Django views (not DRF): no authentication, no session, no CSRF (GET/HEAD only), no
template. ``/healthz`` touches nothing but the process; ``/readyz`` runs
``ocrapp.health.readiness``; ``/metrics`` is open to loopback, or to ``Authorization: Bearer
<METRICS_TOKEN>`` when that setting is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from ocrapp import health, metrics
from ocrapp.errors import error_body

_STARTED = time.time()


@csrf_exempt
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (and answers): 200, no database or broker access."""
    return JsonResponse(
        {"status": "ok", "pid": os.getpid(), "uptime_s": round(time.time() - _STARTED, 1)}
    )


@csrf_exempt
@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker, a worker and its models are all there; else 503 with
    the failing checks named in ``failing`` (each check says why)."""
    body = health.readiness()
    response = JsonResponse(body, status=200 if body["status"] == "ok" else 503)
    # a failing probe is logged once per failing check (ocrapp.health), not again as an
    # "ERROR Service Unavailable" by django.request at every poll
    response._has_been_logged = True
    return response


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _bearer(request: HttpRequest) -> str:
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@csrf_exempt
@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        if not hmac.compare_digest(_bearer(request).encode(), token.encode()):
            response = JsonResponse(
                error_body("metrics_token", _("A valid metrics bearer token is required.")),
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not _loopback(request):
        return JsonResponse(
            error_body(
                "metrics_loopback_only",
                _(
                    "Metrics are served to loopback only; set METRICS_TOKEN to scrape from elsewhere."
                ),
            ),
            status=403,
        )
    return HttpResponse(
        metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8"
    )
