"""Webhooks: domain events (``ocrapp.events``) sent to subscribed endpoints, signed in the
Standard Webhooks scheme (https://www.standardwebhooks.com), with retries and a delivery log.

One home for the concept (DESIGN "one concept, one home"): the scheme (secrets, signatures), the
address policy, the payloads, the writes (``webhook_*`` services: endpoints, deliveries, replay,
reaping) and the reads the API and the page use. Kept out of ``services.py`` so that the
delivery code, which runs in its own worker, reads in one file.

Flow: a service publishes an event inside its transaction; after the commit :func:`on_event`
(subscribed in ``OcrappConfig.ready``) writes one :class:`WebhookDelivery` per active endpoint
subscribed to the event type and, after that commit, enqueues ``workers.tasks.deliver_webhook``
on the queue ``webhooks`` (its own worker: a slow receiver never delays a read).
:func:`delivery_attempt` claims the delivery, POSTs the JSON body with the headers
``webhook-id`` (the message id, the same on every retry and replay), ``webhook-timestamp``
(seconds) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``), and
records the answer: 2xx delivered; network errors, 5xx, 408, 409 and 429 retried with
exponential backoff and jitter (``Retry-After`` respected) up to ``WEBHOOK_MAX_ATTEMPTS``;
any other answer (redirects are not followed) fails at once. The reaper
(``manage.py capture_reaper``) sends again a pending delivery whose message was lost.

Secrets are ``whsec_`` + base64 of 32 random bytes, shown once to the person who creates the
endpoint and stored sealed (AES-GCM, key derived from ``SECRET_KEY``: changing ``SECRET_KEY``
makes them unreadable, and the deliveries of such an endpoint fail with ``secret_unreadable``
until it is replaced by a new endpoint).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from ocrapp import audit, events, roles, selectors
from ocrapp.errors import ApplicationError, NotFoundError
from ocrapp.models import (
    WEBHOOK_CREATED_ACTION,
    WEBHOOK_DEACTIVATED_ACTION,
    WEBHOOK_REPLAYED_ACTION,
    WebhookDelivery,
    WebhookEndpoint,
)
from ocrapp.security import public_url

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
URL_MAX = 500
DESCRIPTION_MAX = 200
RETRY_STATUSES = frozenset({408, 409, 429})  # 4xx worth trying again; 5xx always are
LEASE_MARGIN_SECONDS = 30  # a claimed attempt is held for WEBHOOK_TIMEOUT + this
EARLY_SLACK_SECONDS = 1.0  # a message this early for its attempt still sends
ERROR_MAX = 2000
USER_AGENT = "serialread-webhooks/1"
Delivery = WebhookDelivery.Status


# --- the scheme: secrets and signatures ----------------------------------------------------


def secret_generate() -> str:
    """A new endpoint secret in the scheme's form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (its base64 part decoded)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


class SecretUnreadable(Exception):
    """A sealed secret does not open with this ``SECRET_KEY``."""


def _sealing_key() -> bytes:
    return hmac.new(
        settings.SECRET_KEY.encode("utf-8"), b"serialread webhook secrets v1", hashlib.sha256
    ).digest()


def seal_secret(secret: str) -> str:
    """``secret`` encrypted for storage: ``v1:`` + base64(nonce + AES-GCM ciphertext)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key()).encrypt(nonce, secret.encode("utf-8"), b"whsec")
    return "v1:" + base64.b64encode(nonce + sealed).decode("ascii")


def unseal_secret(sealed: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        version, _sep, text = sealed.partition(":")
        raw = base64.b64decode(text, validate=True)
        if version != "v1" or len(raw) < 13:
            raise SecretUnreadable("unknown sealed form")
        return AESGCM(_sealing_key()).decrypt(raw[:12], raw[12:], b"whsec").decode("utf-8")
    except (InvalidTag, ValueError) as exc:
        raise SecretUnreadable(str(exc) or type(exc).__name__) from exc


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64(HMAC-SHA256(key, "id.ts.body"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The request body: the payload as compact UTF-8 JSON (what the signature covers)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signed_headers(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def new_msg_id() -> str:
    return "msg_" + uuid.uuid4().hex


# --- address policy --------------------------------------------------------------------------


def address_allowed(address: str) -> bool:
    """Whether requests may go to ``address`` (an IP): public unicast addresses only, unless
    ``WEBHOOK_ALLOW_PRIVATE``."""
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an endpoint (a translated sentence), or None. Host names are
    checked again when a request is sent (they may resolve to a private address)."""
    if not url or len(url) > URL_MAX:
        return _("The URL must be 1 to %(max)s characters.") % {"max": URL_MAX}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _("This is not a valid URL.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _("The URL must start with http:// or https:// and name a host.")
    if parts.username or parts.password:
        return _("The URL must not carry a user name or password.")
    if port == 0 or any(ch.isspace() for ch in url):
        return _("This is not a valid URL.")
    host = parts.hostname.rstrip(".").lower()
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return None
    private = _("Loopback, private and link-local addresses are not allowed.")
    if host == "localhost" or host.endswith(".localhost"):
        return private
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: resolved and checked at each request
    return None if address_allowed(host) else private


class BlockedAddress(OSError):
    """The endpoint's host resolves to no address requests may go to."""


def resolve_allowed(host: str, port: int) -> str:
    """An address of ``host`` that requests may go to (see :func:`address_allowed`)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_rest, sockaddr in infos:
        if address_allowed(str(sockaddr[0])):
            return str(sockaddr[0])
    raise BlockedAddress(f"{host} resolves to no public address")


def _guarded_session():
    """A ``requests`` session that connects only to the address it checked (no DNS rebinding
    between the check and the connection), ignores proxy variables and follows no redirect."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _Guard:
        def _new_conn(self):
            # connect to the checked address; the name comes back at once (``host`` is read
            # from ``_dns_host``) for the Host header, SNI and the certificate check
            name = self._dns_host
            self._dns_host = resolve_allowed(name, self.port)
            try:
                return super()._new_conn()
            finally:
                self._dns_host = name

    class _HTTPConnection(_Guard, HTTPConnection):
        pass

    class _HTTPSConnection(_Guard, HTTPSConnection):
        pass

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _HTTPConnection

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _HTTPSConnection

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    session = requests.Session()
    session.trust_env = False
    adapter = _Adapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one request got: the status code (None: no answer), an error text, the delay a
    ``Retry-After`` asked for (s) and whether trying again makes sense."""

    status_code: int | None
    error: str = ""
    retry_after: float | None = None
    retryable: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return max(0.0, (at - datetime.now(dt.UTC)).total_seconds())


def send(*, url: str, headers: dict[str, str], body: bytes) -> Answer:
    """POST ``body`` to ``url`` once (``WEBHOOK_TIMEOUT``, no redirects, guarded addresses)."""
    import requests

    parts = urlsplit(url)
    try:
        resolve_allowed(parts.hostname or "", parts.port or 443)
    except BlockedAddress as exc:
        return Answer(None, f"blocked_address: {exc}")
    except OSError as exc:  # the name does not resolve: maybe a DNS hiccup
        return Answer(None, f"dns_error: {exc}", retryable=True)
    session = _guarded_session()
    try:
        with session.post(
            url,
            data=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as response:
            code = response.status_code
            snippet = ""
            if not 200 <= code < 300:
                snippet = response.raw.read(300, decode_content=True).decode("utf-8", "replace")
    except requests.Timeout as exc:
        return Answer(None, f"timeout: {exc}", retryable=True)
    except requests.RequestException as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}", retryable=True)
    finally:
        session.close()
    if 200 <= code < 300:
        return Answer(code)
    error = f"HTTP {code}" + (f": {snippet.strip()}" if snippet.strip() else "")
    if 300 <= code < 400:
        return Answer(code, f"{error} (redirects are not followed)")
    retryable = code >= 500 or code in RETRY_STATUSES
    retry_after = _retry_after(response.headers.get("Retry-After")) if retryable else None
    return Answer(code, error, retry_after=retry_after, retryable=retryable)


def backoff_seconds(round_attempts: int, retry_after: float | None = None) -> float:
    """Delay before the next try after ``round_attempts`` tries: ``WEBHOOK_BACKOFF_BASE`` x
    2^(n-1), capped at ``WEBHOOK_BACKOFF_MAX``, with jitter (between half and all of it); a
    ``Retry-After`` longer than that wins (up to the cap)."""
    cap = float(settings.WEBHOOK_BACKOFF_MAX)
    delay = min(cap, settings.WEBHOOK_BACKOFF_BASE * 2.0 ** max(0, round_attempts - 1))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def _enqueue(delivery_id: int, countdown: float = 0.0) -> bool:
    """Send the delivery's message to the ``webhooks`` queue; False when the broker refused
    (the reaper sends it later)."""
    from workers.tasks import deliver_webhook

    try:
        deliver_webhook.apply_async(args=[delivery_id], countdown=countdown or None)
    except Exception as exc:
        log.warning("webhook delivery %s not enqueued (%s: %s)", delivery_id, type(exc), exc)
        return False
    return True


def _enqueue_after_commit(ids: list[int]) -> None:
    transaction.on_commit(lambda: [_enqueue(pk) for pk in ids])


def delivery_attempt(*, delivery_id: int) -> str:
    """Send one attempt of a delivery and record the answer; the task's body. Safe to run twice:
    a delivery is claimed under its row lock (the claim holds it for the request's timeout), so
    a duplicate or early message does nothing. Returns the outcome (``delivered``, ``retry``,
    ``failed``, ``skipped``, ``not_due``)."""
    now = timezone.now()
    with transaction.atomic():
        d = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if d is None or d.status != Delivery.PENDING:
            return "skipped"
        if d.next_attempt_at and d.next_attempt_at > now + timedelta(seconds=EARLY_SLACK_SECONDS):
            return "not_due"
        endpoint = d.endpoint
        if not endpoint.active:
            _finish(d, Delivery.FAILED, error="endpoint_inactive: the endpoint was deactivated")
            return "failed"
        try:
            secret = unseal_secret(endpoint.secret_sealed)
        except SecretUnreadable:
            _finish(
                d,
                Delivery.FAILED,
                error="secret_unreadable: the secret does not open with this SECRET_KEY",
            )
            return "failed"
        d.attempts += 1
        d.round_attempts += 1
        d.last_attempt_at = now
        d.next_attempt_at = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT + LEASE_MARGIN_SECONDS)
        d.save(
            update_fields=[
                "attempts",
                "round_attempts",
                "last_attempt_at",
                "next_attempt_at",
                "updated_at",
            ]
        )
        claimed, url, msg_id, payload = d.attempts, endpoint.url, d.msg_id, d.payload
    body = body_bytes(payload)
    headers = signed_headers(secret=secret, msg_id=msg_id, timestamp=int(time.time()), body=body)
    answer = send(url=url, headers=headers, body=body)
    with transaction.atomic():
        d = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if d is None or d.status != Delivery.PENDING or d.attempts != claimed:
            return "skipped"  # replayed or taken over meanwhile
        d.last_status_code = answer.status_code
        if answer.delivered:
            _finish(d, Delivery.DELIVERED, error="")
            log.info("webhook %s delivered to %s (%s)", msg_id, url, answer.status_code)
            return "delivered"
        if answer.retryable and d.round_attempts < settings.WEBHOOK_MAX_ATTEMPTS:
            delay = backoff_seconds(d.round_attempts, answer.retry_after)
            d.last_error = answer.error[:ERROR_MAX]
            d.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            d.save(
                update_fields=["last_status_code", "last_error", "next_attempt_at", "updated_at"]
            )
            transaction.on_commit(lambda: _enqueue(delivery_id, countdown=delay))
            log.warning(
                "webhook %s to %s: %s; try %d in %.1fs",
                msg_id,
                url,
                answer.error,
                claimed + 1,
                delay,
            )
            return "retry"
        error = answer.error
        if answer.retryable:
            error += f" (gave up after {d.round_attempts} attempts)"
        _finish(d, Delivery.FAILED, error=error)
        log.warning("webhook %s to %s failed: %s", msg_id, url, error)
        return "failed"


def _finish(d: WebhookDelivery, status: str, *, error: str) -> None:
    d.status = status
    d.last_error = error[:ERROR_MAX]
    d.next_attempt_at = None
    if status == Delivery.DELIVERED:
        d.delivered_at = timezone.now()
    d.save(
        update_fields=[
            "status",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "updated_at",
        ]
    )


# --- payloads and the event subscriber -------------------------------------------------------


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def capture_summary(*, capture_id: str) -> dict[str, Any]:
    """What a line system needs of a capture, from the API's own ``CaptureOutput``: ids,
    client_ref, station (as named at capture time), product type, status, the latest read's
    fields (value in force, value as printed, valid, confidence), the review state and URLs."""
    from ocrapp.api import CaptureOutput

    capture = selectors.capture_get_unscoped(capture_id=capture_id)
    if capture is None:
        return {"capture_id": str(capture_id)}
    body = CaptureOutput(capture).data
    read = body.get("read") or {}
    review = read.get("review") or {}
    return _json_safe(
        {
            "capture_id": body["id"],
            "client_ref": body["client_ref"],
            "station": body["station"],
            "product_type": body["product_type"],
            "status": body["status"],
            "created_at": body["created_at"],
            "finished_at": body["finished_at"],
            "run": read.get("run"),
            "fields": [
                {
                    "name": f["name"],
                    "value": f["current_value"],
                    "printed": f["raw_value"],
                    "machine_value": f["value"],
                    "valid": f["valid"],
                    "confidence": f["confidence"],
                    "source": f["source"],
                }
                for f in read.get("fields") or ()
            ],
            "needs_review": body["needs_review"],
            "reviewed": body["reviewed"],
            "review_reasons": review.get("reasons") or [],
            "mismatches": read.get("mismatches") or [],
            "urls": {
                "api": body["url"],
                "page": public_url(reverse("capture-detail", kwargs={"capture_id": capture.pk})),
                "image": body["image_url"],
                "thumbnail": body["thumbnail_url"],
            },
        }
    )


def build_payload(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """``{"type", "timestamp", "data"}``: read events carry the capture summary in ``data``;
    other events their own data and, when they name a capture, its summary as ``capture``."""
    out = dict(data)
    capture_id = data.get("capture_id")
    if capture_id:
        summary = capture_summary(capture_id=str(capture_id))
        if event_type in (events.READ_DONE, events.READ_NEEDS_REVIEW):
            out.update(summary)
        else:
            out["capture"] = summary
    return {
        "type": event_type,
        "timestamp": timezone.now().isoformat(timespec="milliseconds"),
        "data": _json_safe(out),
    }


def on_event(event_type: str, data: dict[str, Any]) -> list[int]:
    """The ``ocrapp.events`` subscriber (after the publishing transaction committed): one
    pending delivery per active endpoint subscribed to ``event_type``, enqueued after commit.
    Returns the delivery ids."""
    endpoint_ids = list(
        WebhookEndpoint.objects.filter(active=True, event_types__contains=[event_type])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not endpoint_ids:
        return []
    payload = build_payload(event_type, data)
    now = timezone.now()
    with transaction.atomic():
        rows = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint_id=pk,
                    event_type=event_type,
                    msg_id=new_msg_id(),
                    payload=payload,
                    next_attempt_at=now,
                )
                for pk in endpoint_ids
            ]
        )
        ids = [row.pk for row in rows]
        _enqueue_after_commit(ids)
    return ids


# --- services: endpoints, replay, reaping ---------------------------------------------------


def _require_manage(user: Any) -> None:
    roles.require(user, "manage_webhooks", message=_("You are not allowed to manage webhooks."))


def _require_view(user: Any) -> None:
    if not (roles.can(user, "view_webhooks") or roles.can(user, "manage_webhooks")):
        roles.require(user, "view_webhooks", message=_("You are not allowed to see webhooks."))


def _endpoint_state(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "active": endpoint.active,
        "secret_prefix": endpoint.secret_prefix,
    }


def webhook_endpoint_create(
    *, user: Any, url: str, event_types: list[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint (``manage_webhooks``) with a new secret; returns the endpoint and the
    clear secret, which is never available again. Audited (``webhook.create``, no secret)."""
    _require_manage(user)
    url = (url or "").strip()
    problem = url_problem(url)
    if problem:
        raise ApplicationError("invalid_url", problem, details={"url": [problem]})
    types = list(dict.fromkeys(event_types or ()))
    unknown = [t for t in types if t not in events.EVENT_TYPES]
    if not types or unknown:
        message = _("Choose one or more event types among %(types)s.") % {
            "types": ", ".join(events.EVENT_TYPES)
        }
        raise ApplicationError(
            "invalid_event_type", message, details={"event_types": unknown or [message]}
        )
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        message = _("The description must be at most %(max)s characters.") % {
            "max": DESCRIPTION_MAX
        }
        raise ApplicationError("invalid", message, details={"description": [message]})
    secret = secret_generate()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            url=url,
            event_types=types,
            description=description,
            secret_sealed=seal_secret(secret),
            secret_prefix=secret[: len(SECRET_PREFIX) + 4],
            created_by=user if getattr(user, "pk", None) else None,
        )
        audit.record(
            actor=user, action=WEBHOOK_CREATED_ACTION, obj=endpoint, after=_endpoint_state(endpoint)
        )
    return endpoint, secret


def webhook_endpoint_deactivate(*, user: Any, endpoint_id: int | str) -> WebhookEndpoint:
    """Deactivate an endpoint (``manage_webhooks``): no new deliveries, its pending ones fail
    (``endpoint_inactive``). Idempotent; audited (``webhook.deactivate``)."""
    _require_manage(user)
    pk = selectors.as_id(endpoint_id)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=pk).first() if pk else None
        if endpoint is None:
            raise NotFoundError("not_found", _("No webhook with this id."))
        if not endpoint.active:
            return endpoint
        before = _endpoint_state(endpoint)
        endpoint.active = False
        endpoint.deactivated_at = timezone.now()
        endpoint.save(update_fields=["active", "deactivated_at"])
        endpoint.deliveries.filter(status=Delivery.PENDING).update(
            status=Delivery.FAILED,
            next_attempt_at=None,
            last_error="endpoint_inactive: the endpoint was deactivated",
            updated_at=timezone.now(),
        )
        audit.record(
            actor=user,
            action=WEBHOOK_DEACTIVATED_ACTION,
            obj=endpoint,
            before=before,
            after=_endpoint_state(endpoint),
        )
    return endpoint


def webhook_delivery_replay(*, user: Any, delivery_id: int | str) -> WebhookDelivery:
    """Send a delivered or failed delivery again (``manage_webhooks``): same message id and
    payload, a new attempt now with a fresh round of retries. 409 while it is still pending or
    when its endpoint is inactive. Audited (``webhook.replay``)."""
    _require_manage(user)
    pk = selectors.as_id(delivery_id)
    with transaction.atomic():
        d = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=pk)
            .first()
            if pk
            else None
        )
        if d is None:
            raise NotFoundError("not_found", _("No webhook delivery with this id."))
        if d.status == Delivery.PENDING:
            raise ApplicationError(
                "delivery_pending",
                _("This delivery is still being sent; wait for it to finish."),
                status_code=409,
            )
        if not d.endpoint.active:
            raise ApplicationError(
                "endpoint_inactive",
                _("The endpoint of this delivery is deactivated."),
                status_code=409,
            )
        before = {"status": d.status, "attempts": d.attempts, "replays": d.replays}
        d.status = Delivery.PENDING
        d.round_attempts = 0
        d.replays += 1
        d.next_attempt_at = timezone.now()
        d.save(
            update_fields=["status", "round_attempts", "replays", "next_attempt_at", "updated_at"]
        )
        audit.record(
            actor=user,
            action=WEBHOOK_REPLAYED_ACTION,
            object_type="ocrapp.webhookdelivery",
            object_id=str(d.pk),
            object_repr=f"{d.msg_id} {d.event_type} -> {d.endpoint.url}"[:255],
            before=before,
            after={"status": d.status, "attempts": d.attempts, "replays": d.replays},
        )
        _enqueue_after_commit([d.pk])
    return d


def webhook_reap(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    """Send again the pending deliveries whose attempt is more than ``WEBHOOK_REAP_AFTER`` s
    overdue (a lost message, a worker killed mid-request, an enqueue the broker refused); the
    claim makes a message that turns up after all harmless. Returns their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_REAP_AFTER)
    overdue = Q(next_attempt_at__lte=cutoff) | Q(next_attempt_at__isnull=True)
    ids = list(
        WebhookDelivery.objects.filter(overdue, status=Delivery.PENDING)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    resent = []
    for pk in ids:
        taken = (
            WebhookDelivery.objects.filter(overdue, pk=pk, status=Delivery.PENDING).update(
                next_attempt_at=now, updated_at=now
            )
            == 1
        )
        if taken and _enqueue(pk):
            resent.append(pk)
    if resent:
        log.warning("webhooks: %d deliveries sent again (message lost)", len(resent))
    return resent


# --- reads -----------------------------------------------------------------------------------


def can_manage(user: Any) -> bool:
    return roles.can(user, "manage_webhooks")


def can_view(user: Any) -> bool:
    return roles.can(user, "view_webhooks") or can_manage(user)


def webhook_endpoint_list(*, user: Any) -> QuerySet[WebhookEndpoint]:
    """Every endpoint (``view_webhooks``), newest first, with counts of its deliveries."""
    _require_view(user)
    return WebhookEndpoint.objects.annotate(
        pending_count=Count("deliveries", filter=Q(deliveries__status=Delivery.PENDING)),
        failed_count=Count("deliveries", filter=Q(deliveries__status=Delivery.FAILED)),
        delivered_count=Count("deliveries", filter=Q(deliveries__status=Delivery.DELIVERED)),
    ).select_related("created_by")


def webhook_endpoint_get(*, user: Any, endpoint_id: int | str) -> WebhookEndpoint:
    _require_view(user)
    pk = selectors.as_id(endpoint_id)
    endpoint = WebhookEndpoint.objects.filter(pk=pk).first() if pk else None
    if endpoint is None:
        raise NotFoundError("not_found", _("No webhook with this id."))
    return endpoint


def webhook_delivery_list(
    *,
    user: Any,
    endpoint_id: int | None = None,
    status: str = "",
    before: int | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """Deliveries newest first (``view_webhooks``), of one endpoint and/or one status;
    ``before``: only ids below it (the next page)."""
    _require_view(user)
    qs = WebhookDelivery.objects.select_related("endpoint").order_by("-id")
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    if status:
        if status not in Delivery.values:
            raise ApplicationError(
                "invalid",
                _("status must be one of %(values)s.") % {"values": ", ".join(Delivery.values)},
                details={"status": list(Delivery.values)},
            )
        qs = qs.filter(status=status)
    if before is not None:
        qs = qs.filter(pk__lt=before)
    return list(qs[: max(1, min(limit, 200))])
