"""Request-side security helpers: the Content-Security-Policy header, the client address and
absolute URLs built from ``PUBLIC_BASE_URL`` (never from the request's ``Host`` header)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache

CSP_HEADERS = {
    "enforce": "Content-Security-Policy",
    "report-only": "Content-Security-Policy-Report-Only",
}


class ContentSecurityPolicyMiddleware:
    """Adds ``settings.CSP_POLICY`` to every response as ``Content-Security-Policy`` (or its
    ``-Report-Only`` form, ``CSP_MODE``), unless the view set one itself. The pages load only
    the app's own static files (no inline script or style), the Swagger UI at /api/docs its
    self-hosted sidecar assets."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        header = CSP_HEADERS.get(settings.CSP_MODE)
        if header and settings.CSP_POLICY and header not in response:
            response[header] = settings.CSP_POLICY
        return response


def client_ip(request: Any) -> str | None:
    """The address the request came from: ``REMOTE_ADDR``, or with ``CLIENT_IP_HEADER`` set
    (behind a proxy, e.g. ``X-Forwarded-For``) the last address of that header, the one the
    proxy in front of the app added. None without a request (a service call)."""
    if request is None:
        return None
    meta = getattr(request, "META", {})
    header = settings.CLIENT_IP_HEADER
    if header:
        raw = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
        last = raw.split(",")[-1].strip() if raw else ""
        if last:
            return last[:64]
    return (meta.get("REMOTE_ADDR") or "")[:64] or None


def public_url(path: str) -> str:
    """The absolute URL of ``path`` (as ``reverse`` gives it) at ``settings.PUBLIC_BASE_URL``."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + "/" + path.lstrip("/")


def counter_hit(key: str, period: int) -> int:
    """Add one to the counter ``key`` (created for ``period`` s) and return its new value."""
    cache.add(key, 0, timeout=period + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        return 1
