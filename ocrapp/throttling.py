"""API rate limits per token (DRF throttling on the shared cache, ``settings.CACHES``).

Each API token (else the signed-in user, else the client address) gets ``API_RATE_UPLOAD``
requests per period for uploads (views with ``throttle_scope = "upload"``) and
``API_RATE_READ`` for every other API call. Counting is a fixed window per period with an
atomic ``incr`` (Redis), shared by all web processes. Over the rate DRF raises ``Throttled``:
429 in the JSON error shape with ``Retry-After`` (seconds until the window ends). If the cache
cannot be reached the request is let through (and logged) rather than answered with a 500.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from ocrapp.config import parse_rate
from ocrapp.security import client_ip, counter_hit

log = logging.getLogger(__name__)

SCOPES = {"upload": "API_RATE_UPLOAD", "read": "API_RATE_READ"}


class ApiRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def _ident(self, request) -> str:
        token = getattr(request, "auth", None)
        if getattr(token, "pk", None) is not None:
            return f"token:{token.pk}"
        user = getattr(request, "user", None)
        if getattr(user, "is_authenticated", False):
            return f"user:{user.pk}"
        ip = client_ip(request) or "unknown"
        return "ip:" + hashlib.sha256(ip.encode()).hexdigest()[:32]

    def allow_request(self, request, view) -> bool:
        scope = getattr(view, "throttle_scope", None) or "read"
        rate = parse_rate(getattr(settings, SCOPES.get(scope, "API_RATE_READ")))
        if rate is None:
            return True
        number, period = rate
        now = time.time()
        window = int(now // period)
        key = f"throttle:{scope}:{self._ident(request)}:{period}:{window}"
        try:
            count = counter_hit(key, period)
        except Exception:  # the cache is down: serve rather than fail every request
            log.exception("rate limit not applied: the cache is unreachable")
            return True
        if count <= number:
            return True
        self._wait = max(1, math.ceil((window + 1) * period - now))
        return False

    def wait(self) -> float | None:
        return self._wait
