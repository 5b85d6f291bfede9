"""Webhooks (ocrapp/webhooks.py): Standard Webhooks signatures checked by an independent
implementation (the ``standardwebhooks`` package), secrets sealed at rest, the address policy,
one delivery per subscribed active endpoint after the commit (none after a rollback), the
answers' handling (retry with backoff, give up, fail at once), replay, the reaper, the API, the
page and their permissions. Attempts run here in the test process against a real HTTP server
(tests/webhook_receiver.py); tests/integration/test_webhooks_worker.py runs them in a real
Celery worker."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ocrapp import events, roles, services, webhooks
from ocrapp.models import AuditEvent, Field, WebhookDelivery, WebhookEndpoint
from tests.review_data import PASSWORD, accepted_result, person, queued_result, stored_capture
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_allowed(settings):
    """The receiver listens on 127.0.0.1; the address policy is tested with it off."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_BACKOFF_BASE = 10
    settings.WEBHOOK_BACKOFF_MAX = 3600
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_TIMEOUT = 5


@pytest.fixture
def qm(db):
    return person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")


@pytest.fixture
def auditor(db):
    return person("aud", roles.AUDITOR)


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _endpoint(qm, url: str, types=(events.READ_DONE,), **kw):
    endpoint, secret = webhooks.webhook_endpoint_create(
        user=qm, url=url, event_types=list(types), **kw
    )
    return endpoint, secret


def _delivery(endpoint, event_type=events.READ_DONE, **kw) -> WebhookDelivery:
    payload = {"type": event_type, "timestamp": "2026-12-01T12:00:00.000Z", "data": {"n": 1}}
    return WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_type=event_type,
        msg_id=webhooks.new_msg_id(),
        payload=payload,
        next_attempt_at=timezone.now(),
        **kw,
    )


def _verify(secret: str, received) -> dict:
    """The request as a receiver checks it, with the independent implementation."""
    return Webhook(secret).verify(received.body, received.headers)


# --- the scheme -------------------------------------------------------------------------------


def test_signatures_verify_with_the_standardwebhooks_package_and_tampering_is_refused():
    secret = webhooks.secret_generate()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = webhooks.body_bytes({"type": "read.done", "data": {"serial": "SN-ÄÖ-1"}})
    ts = int(timezone.now().timestamp())
    headers = webhooks.signed_headers(secret=secret, msg_id="msg_abc", timestamp=ts, body=body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {
        "type": "read.done",
        "data": {"serial": "SN-ÄÖ-1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"SN-", b"SX-"), headers)  # tampered body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.secret_generate()).verify(body, headers)  # another secret
    stale = webhooks.signed_headers(secret=secret, msg_id="msg_abc", timestamp=ts - 3600, body=body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)  # replayed an hour later by someone else


def test_the_readme_example_verifies_our_signatures():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("```python\nimport base64, hashlib, hmac, time\n", 1)[1].split("```")[0]
    namespace: dict = {}
    exec("import base64, hashlib, hmac, time\n" + code, namespace)  # noqa: S102
    verify = namespace["verify"]
    secret = webhooks.secret_generate()
    body = webhooks.body_bytes({"type": "read.done", "data": {"capture_id": "c1"}})
    ts = int(timezone.now().timestamp())
    headers = webhooks.signed_headers(secret=secret, msg_id="msg_1", timestamp=ts, body=body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(webhooks.secret_generate(), headers, body)
    old = webhooks.signed_headers(secret=secret, msg_id="msg_1", timestamp=ts - 900, body=body)
    assert not verify(secret, old, body)


def test_the_secret_is_sealed_at_rest_and_shown_only_at_creation(qm, settings):
    endpoint, secret = _endpoint(qm, "https://mes.example.com/hooks")
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert secret not in stored.secret_sealed and secret[6:] not in stored.secret_sealed
    assert webhooks.unseal_secret(stored.secret_sealed) == secret
    assert stored.secret_prefix == secret[:10]
    created = AuditEvent.objects.get(action="webhook.create", object_id=str(endpoint.pk))
    assert secret not in json.dumps(created.after) and created.actor == qm
    assert created.after["event_types"] == [events.READ_DONE]
    settings.SECRET_KEY = "another-secret-key-" * 4
    with pytest.raises(webhooks.SecretUnreadable):
        webhooks.unseal_secret(stored.secret_sealed)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://mes.example.com/x",
        "mes.example.com/hooks",
        "http://127.0.0.1:8000/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.5/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://localhost/hooks",
        "https://user:pw@mes.example.com/hooks",
        "https://mes.example.com:99999/hooks",
    ],
)
def test_urls_that_are_no_public_http_endpoint_are_refused(qm, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    resp = _client(qm).post(
        "/api/v1/webhooks", {"url": url, "event_types": ["read.done"]}, format="json"
    )
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["code"] == "invalid_url"
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action="webhook.create").exists()


def test_public_urls_are_accepted_and_private_ones_only_when_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert webhooks.url_problem("https://mes.example.com/hooks?line=1") is None
    assert webhooks.url_problem("http://93.184.215.14:8080/h") is None
    assert webhooks.url_problem("http://127.0.0.1:9/h")
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert webhooks.url_problem("http://127.0.0.1:9/h") is None


def test_a_host_on_a_private_address_is_refused_when_the_request_is_sent(qm, settings):
    with Receiver() as receiver:
        endpoint, _secret = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. a name that now resolves to 127.0.0.1
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "failed"
        assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("blocked_address")


# --- events -> deliveries -----------------------------------------------------------------------


def test_one_delivery_per_active_subscribed_endpoint_after_the_commit(
    qm, user, station, product_type, django_capture_on_commit_callbacks
):
    done, _ = _endpoint(qm, "https://a.example.com/h", [events.READ_DONE])
    both, _ = _endpoint(qm, "https://b.example.com/h", [events.READ_DONE, events.READ_NEEDS_REVIEW])
    off, _ = _endpoint(qm, "https://c.example.com/h", [events.READ_DONE])
    webhooks.webhook_endpoint_deactivate(user=qm, endpoint_id=off.pk)
    _endpoint(qm, "https://d.example.com/h", [events.FIELD_CORRECTED])
    capture = stored_capture(user, station, product_type, None)  # PENDING (nothing sent)
    assert services.capture_claim(capture_id=capture.pk) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.read_save(capture_id=capture.pk, result=queued_result("SN20260042"))
    rows = WebhookDelivery.objects.order_by("endpoint_id", "event_type")
    assert [(d.endpoint_id, d.event_type) for d in rows] == [
        (done.pk, "read.done"),
        (both.pk, "read.done"),
        (both.pk, "read.needs_review"),
    ]
    assert len({d.msg_id for d in rows}) == 3 and all(d.msg_id.startswith("msg_") for d in rows)
    payload = rows[0].payload
    assert payload["type"] == "read.done"
    data = payload["data"]
    assert data["capture_id"] == str(capture.pk) and data["status"] == "DONE"
    assert data["station"]["line"] == "LINE-1" and data["product_type"] == product_type.name
    assert data["needs_review"] is True and data["review_reasons"][0]["code"] == "low_confidence"
    serial = next(f for f in data["fields"] if f["name"] == "serial_number")
    assert serial["value"] == "SN20260042" and "confidence" in serial and "valid" in serial
    assert data["urls"]["api"].endswith(f"/api/v1/captures/{capture.pk}")
    assert data["urls"]["page"].endswith(f"/captures/{capture.pk}/")


def test_an_accepted_read_announces_read_done_only(
    qm, user, station, product_type, django_capture_on_commit_callbacks
):
    _endpoint(qm, "https://a.example.com/h", [events.READ_DONE, events.READ_NEEDS_REVIEW])
    capture = stored_capture(user, station, product_type, None)
    assert services.capture_claim(capture_id=capture.pk) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.read_save(capture_id=capture.pk, result=accepted_result("SN20260043"))
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["read.done"]


def test_nothing_is_delivered_when_the_transaction_rolls_back(
    qm, django_capture_on_commit_callbacks
):
    _endpoint(qm, "https://a.example.com/h", [events.ALARM_RAISED])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish(events.ALARM_RAISED, {"alarm_id": 7})
            raise RuntimeError("the change fails")
    assert callbacks == [] and not WebhookDelivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            events.publish(events.ALARM_RAISED, {"alarm_id": 8})
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["data"] == {"alarm_id": 8}


def test_a_correction_announces_field_corrected(
    qm, user, station, product_type, django_capture_on_commit_callbacks
):
    _endpoint(qm, "https://a.example.com/h", [events.FIELD_CORRECTED])
    capture = stored_capture(user, station, product_type, queued_result("SN2O260042"))
    field = Field.objects.get(read__capture=capture, name="serial_number")
    with django_capture_on_commit_callbacks(execute=True):
        services.field_revise(
            user=qm, field_id=field.pk, value="SN20260042", reason="misread", password=PASSWORD
        )
        part = Field.objects.get(read__capture=capture, name="part_number")
        services.field_revise(user=qm, field_id=part.pk, value=None, password=PASSWORD)  # kept
    delivery = WebhookDelivery.objects.get()  # the unchanged part number announced nothing
    data = delivery.payload["data"]
    assert delivery.event_type == "field.corrected"
    assert (data["field"], data["old_value"], data["new_value"]) == (
        "serial_number",
        "SN2O260042",
        "SN20260042",
    )
    assert data["signer"] == "Ada Kim (ada)" and data["capture"]["capture_id"] == str(capture.pk)


# --- attempts -----------------------------------------------------------------------------------


def test_a_delivery_is_signed_retried_on_500_and_then_delivered_with_the_same_id(qm):
    with Receiver(answers=[500]) as receiver:
        endpoint, secret = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        before = timezone.now()
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "retry"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            500,
        )
        # backoff with jitter: between half and all of WEBHOOK_BACKOFF_BASE (10 s)
        wait = (delivery.next_attempt_at - before).total_seconds()
        assert 4.9 <= wait <= 10.5, wait
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "not_due"  # early duplicate
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "delivered"
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "skipped"  # redelivered msg
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.msg_id
    assert first.headers["content-type"] == "application/json"
    for received in receiver.requests:
        assert _verify(secret, received) == delivery.payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 2, "")
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def test_the_backoff_doubles_and_gives_up_after_the_attempt_limit(qm, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    waits = []
    with Receiver(answers=[503, 502, 500, 200]) as receiver:
        endpoint, _ = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        for _ in range(3):
            now = timezone.now()
            outcome = webhooks.delivery_attempt(delivery_id=delivery.pk)
            delivery.refresh_from_db()
            if outcome == "retry":
                waits.append((delivery.next_attempt_at - now).total_seconds())
                WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
    assert outcome == "failed" and len(receiver.requests) == 3
    assert 4.9 <= waits[0] <= 10.5 and 9.9 <= waits[1] <= 20.5, waits
    assert delivery.status == "failed" and delivery.attempts == 3
    assert "gave up after 3 attempts" in delivery.last_error and delivery.last_status_code == 500


@pytest.mark.parametrize(
    ("answer", "outcome", "expected"),
    [
        (404, "failed", "HTTP 404"),
        (400, "failed", "HTTP 400"),
        ((301, {"Location": "http://127.0.0.1:9/elsewhere"}), "failed", "redirects are not"),
        (408, "retry", "HTTP 408"),
        (409, "retry", "HTTP 409"),
        ((429, {"Retry-After": "120"}), "retry", "HTTP 429"),
    ],
)
def test_answers_other_than_2xx(qm, answer, outcome, expected):
    with Receiver(answers=[answer]) as receiver:
        endpoint, _ = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        now = timezone.now()
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == outcome
    assert len(receiver.requests) == 1  # the redirect was not followed
    delivery.refresh_from_db()
    assert expected in delivery.last_error and delivery.attempts == 1
    if isinstance(answer, tuple) and answer[0] == 429:  # Retry-After wins over the backoff
        assert (delivery.next_attempt_at - now).total_seconds() >= 119


def test_a_receiver_that_is_down_is_retried(qm):
    with Receiver() as receiver:
        url = receiver.url
    endpoint, _ = _endpoint(qm, url)  # nothing listens there any more
    delivery = _delivery(endpoint)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "retry"
    delivery.refresh_from_db()
    assert delivery.last_status_code is None and "ConnectionError" in delivery.last_error


def test_an_inactive_endpoint_gets_nothing(qm):
    with Receiver() as receiver:
        endpoint, _ = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        webhooks.webhook_endpoint_deactivate(user=qm, endpoint_id=endpoint.pk)
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "skipped"
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("endpoint_inactive")
    assert AuditEvent.objects.filter(action="webhook.deactivate").count() == 1


# --- replay and the reaper ----------------------------------------------------------------------


def test_replay_sends_the_same_message_again_and_is_audited(qm, auditor, user):
    with Receiver(answers=[404]) as receiver:
        endpoint, secret = _endpoint(qm, receiver.url)
        delivery = _delivery(endpoint)
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "failed"
        for who in (auditor, user):  # read-only and operators may not replay
            resp = _client(who).post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
            assert resp.status_code == 403, resp.content
        resp = _client(qm).post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
        assert resp.status_code == 202, resp.content
        assert resp.json()["status"] == "pending" and resp.json()["replays"] == 1
        again = _client(qm).post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
        assert again.status_code == 409 and again.json()["error"]["code"] == "delivery_pending"
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "delivered"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.msg_id] * 2
    assert _verify(secret, receiver.requests[1]) == delivery.payload
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.replays) == ("delivered", 2, 1)
    row = AuditEvent.objects.get(action="webhook.replay")
    assert row.actor == qm and row.object_id == str(delivery.pk)
    assert row.before["status"] == "failed" and row.after["status"] == "pending"


def test_the_reaper_resends_only_deliveries_long_overdue(qm, settings):
    settings.WEBHOOK_REAP_AFTER = 120
    endpoint, _ = _endpoint(qm, "https://a.example.com/h")
    now = timezone.now()
    lost = _delivery(endpoint)
    WebhookDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(seconds=300))
    recent = _delivery(endpoint)
    done = _delivery(endpoint, status="delivered")
    WebhookDelivery.objects.filter(pk=done.pk).update(next_attempt_at=now - timedelta(hours=1))
    assert webhooks.webhook_reap(now=now) == [lost.pk]
    lost.refresh_from_db()
    assert lost.next_attempt_at == now  # due now; not picked again before WEBHOOK_REAP_AFTER
    assert webhooks.webhook_reap(now=now + timedelta(seconds=60)) == []
    assert recent.pk not in webhooks.webhook_reap(now=now)


# --- API and page -------------------------------------------------------------------------------


def test_api_create_shows_the_secret_once_and_lists_without_it(qm, auditor):
    resp = _client(qm).post(
        "/api/v1/webhooks",
        {
            "url": "https://mes.example.com/hooks",
            "event_types": ["read.done", "alarm.raised"],
            "description": "MES line 1",
        },
        format="json",
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["secret"].startswith("whsec_") and resp["Cache-Control"] == "no-store"
    assert body["event_types"] == ["read.done", "alarm.raised"] and body["active"] is True
    listing = _client(auditor).get("/api/v1/webhooks")
    assert listing.status_code == 200
    assert [e["id"] for e in listing.json()["results"]] == [body["id"]]
    assert body["secret"] not in listing.content.decode()
    log = _client(auditor).get(f"/api/v1/webhooks/{body['id']}/deliveries")
    assert log.status_code == 200 and log.json() == {"next": None, "results": []}


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://mes.example.com/h", "event_types": ["read.exploded"]},
        {"url": "https://mes.example.com/h", "event_types": []},
        {"url": "https://mes.example.com/h"},
        {"event_types": ["read.done"]},
        {"url": "https://mes.example.com/h", "event_types": "read.done"},
    ],
)
def test_api_create_refuses_bad_input(qm, body):
    resp = _client(qm).post("/api/v1/webhooks", body, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid"
    assert not WebhookEndpoint.objects.exists()


def test_only_managers_create_and_only_viewers_read(auditor, user, station_client):
    new = {"url": "https://mes.example.com/h", "event_types": ["read.done"]}
    assert _client(auditor).post("/api/v1/webhooks", new, format="json").status_code == 403
    assert _client(user).post("/api/v1/webhooks", new, format="json").status_code == 403
    assert _client(user).get("/api/v1/webhooks").status_code == 403
    assert station_client.get("/api/v1/webhooks").status_code == 403
    assert station_client.post("/api/v1/webhooks", new, format="json").status_code == 403
    assert not WebhookEndpoint.objects.exists()
    assert _client(auditor).get("/api/v1/webhooks/999/deliveries").status_code == 404
    assert _client(auditor).get("/api/v1/webhooks/abc/deliveries").status_code == 404


def test_delivery_log_pages_and_filters(qm):
    endpoint, _ = _endpoint(qm, "https://a.example.com/h")
    rows = [_delivery(endpoint) for _ in range(3)]
    WebhookDelivery.objects.filter(pk=rows[0].pk).update(status="failed")
    client = _client(qm)
    page = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?limit=2").json()
    assert [d["id"] for d in page["results"]] == [rows[2].pk, rows[1].pk]
    rest = client.get(page["next"]).json()
    assert [d["id"] for d in rest["results"]] == [rows[0].pk]
    failed = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=failed").json()
    assert [d["id"] for d in failed["results"]] == [rows[0].pk]
    bad = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=lost")
    assert bad.status_code == 400
    huge = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?before=99999999999999999999")
    assert huge.status_code == 400


def test_page_creates_shows_the_secret_once_deactivates_and_replays(qm, auditor, client):
    assert client.login(username="ada", password=PASSWORD)
    resp = client.post(
        "/webhooks/",
        {
            "action": "create",
            "url": "https://mes.example.com/hooks",
            "event_types": ["read.done", "field.corrected"],
        },
    )
    assert resp.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    secret = webhooks.unseal_secret(endpoint.secret_sealed)
    assert secret in resp.content.decode() and "no-store" in resp["Cache-Control"]
    assert endpoint.event_types == ["read.done", "field.corrected"]
    page = client.get("/webhooks/")
    assert page.status_code == 200 and secret not in page.content.decode()
    assert "https://mes.example.com/hooks" in page.content.decode()

    bad = client.post("/webhooks/", {"action": "create", "url": "gopher://x", "event_types": []})
    assert bad.status_code == 400 and WebhookEndpoint.objects.count() == 1

    delivery = _delivery(endpoint, status="failed")
    replay = client.post("/webhooks/", {"action": "replay", "delivery_id": delivery.pk})
    assert replay.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.replays == 1

    off = client.post("/webhooks/", {"action": "deactivate", "endpoint_id": endpoint.pk})
    assert off.status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.active

    client.logout()
    assert client.login(username="aud", password=PASSWORD)
    seen = client.get("/webhooks/")
    assert seen.status_code == 200 and 'name="action"' not in seen.content.decode()
    refused = client.post("/webhooks/", {"action": "replay", "delivery_id": delivery.pk})
    assert refused.status_code == 403


def test_page_is_refused_to_operators(user, client):
    assert client.login(username="operator", password="op-pass-1234")
    assert client.get("/webhooks/").status_code == 403


def test_devstack_runs_a_webhook_worker_beside_the_ocr_worker():
    import argparse

    from ocrapp import devstack

    args = argparse.Namespace(host="127.0.0.1", port=8000, concurrency=1)
    procs = {p.name: p for p in devstack.app_procs(args, {"CELERY_BROKER_URL": "redis://x"})}
    assert set(procs) == {"web", "worker", "webhooks", "reaper"}
    hooks, ocr = procs["webhooks"].argv, procs["worker"].argv
    assert hooks[hooks.index("-Q") + 1] == "webhooks" and ocr[ocr.index("-Q") + 1] == "ocr"
    assert hooks[hooks.index("--pool") + 1] == "threads"
    assert procs["webhooks"].env["OCR_WARMUP"] == "0"  # it loads no model


def test_the_reaper_command_resends_lost_deliveries(qm, settings):
    from io import StringIO

    from django.core.management import call_command

    endpoint, _ = _endpoint(qm, "https://a.example.com/h")
    lost = _delivery(endpoint)
    overdue = timezone.now() - timedelta(seconds=settings.WEBHOOK_REAP_AFTER + 60)
    WebhookDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=overdue)
    out = StringIO()
    call_command("capture_reaper", "--once", stdout=out)
    assert "webhook deliveries sent again: 1" in out.getvalue()
    lost.refresh_from_db()
    assert lost.next_attempt_at > overdue
