"""Webhooks end to end: a read saved in the database is announced after its commit, a real
Celery worker on the queue ``webhooks`` (threads pool, as devstack and docker-compose run it)
sends it to a real HTTP server, retries a 500 with backoff, gives up after
``WEBHOOK_MAX_ATTEMPTS`` and re-sends a replayed delivery with the same message id; every request
verifies with the independent ``standardwebhooks`` implementation."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from ocrapp import events, roles, services, webhooks
from ocrapp.models import WebhookDelivery
from tests.conftest import run_celery_worker, wait_for
from tests.review_data import person, queued_result, stored_capture
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver listens on 127.0.0.1
    "WEBHOOK_BACKOFF_BASE": "1",
    "WEBHOOK_MAX_ATTEMPTS": "3",
    "WEBHOOK_TIMEOUT": "5",
    "OCR_WARMUP": "0",
}


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    with run_celery_worker(
        django_db_blocker,
        tmp_path_factory.mktemp("webhooks"),
        WORKER_ENV,
        queue="webhooks",
        pool=("--pool", "threads", "--concurrency", "4"),
    ) as worker:
        yield worker


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_BACKOFF_BASE = 1
    settings.WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture
def qm(transactional_db):
    return person("ada", roles.QUALITY_MANAGER, first="Ada", last="Kim")


def _read(user, station, product_type, serial: str):
    """A capture read and saved (committed: the events go out after the commit)."""
    capture = stored_capture(user, station, product_type, None)
    assert services.capture_claim(capture_id=capture.pk) is not None
    assert services.read_save(capture_id=capture.pk, result=queued_result(serial)) is not None
    return capture


def _final(delivery_id: int, worker):
    def check():
        d = WebhookDelivery.objects.get(pk=delivery_id)
        return d if d.status != "pending" else None

    try:
        return wait_for(check, timeout=60)
    except BaseException:
        print(worker.log()[-4000:])
        raise


def test_a_read_is_delivered_signed_by_the_worker(webhook_worker, qm, user, station, product_type):
    with Receiver() as receiver:
        endpoint, secret = webhooks.webhook_endpoint_create(
            user=qm, url=receiver.url, event_types=[events.READ_DONE, events.READ_NEEDS_REVIEW]
        )
        capture = _read(user, station, product_type, "SN20260042")
        deliveries = wait_for(lambda: list(WebhookDelivery.objects.order_by("event_type")), 10)
        assert [d.event_type for d in deliveries] == ["read.done", "read.needs_review"]
        for d in deliveries:
            assert _final(d.pk, webhook_worker).status == "delivered"
        assert len(receiver.requests) == 2
    by_id = {r.headers["webhook-id"]: r for r in receiver.requests}
    for d in deliveries:
        payload = Webhook(secret).verify(by_id[d.msg_id].body, by_id[d.msg_id].headers)
        assert payload["type"] == d.event_type
        assert payload["data"]["capture_id"] == str(capture.pk)
        assert {f["name"] for f in payload["data"]["fields"]} >= {"serial_number"}
    assert by_id[deliveries[0].msg_id].path == "/hooks/serialread"


def test_a_500_is_retried_with_backoff_then_delivered(webhook_worker, qm):
    with Receiver(answers=[500, 503]) as receiver:
        endpoint, secret = webhooks.webhook_endpoint_create(
            user=qm, url=receiver.url, event_types=[events.ALARM_RAISED]
        )
        events.publish(events.ALARM_RAISED, {"alarm_id": 41})  # autocommit: sent at once
        delivery = wait_for(lambda: WebhookDelivery.objects.first(), 10)
        done = _final(delivery.pk, webhook_worker)
    assert (done.status, done.attempts, done.last_status_code) == ("delivered", 3, 200)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [done.msg_id] * 3
    first, second, third = (r.at for r in receiver.requests)
    # backoff with jitter: between half and all of 1 s, then of 2 s
    assert second - first >= 0.45 and third - second >= 0.95
    for received in receiver.requests:
        assert Webhook(secret).verify(received.body, received.headers)["data"] == {"alarm_id": 41}


def test_gives_up_after_the_attempt_limit_and_a_replay_sends_it_again(webhook_worker, qm):
    with Receiver(answers=[500, 500, 500]) as receiver:
        endpoint, secret = webhooks.webhook_endpoint_create(
            user=qm, url=receiver.url, event_types=[events.ALARM_RAISED]
        )
        events.publish(events.ALARM_RAISED, {"alarm_id": 42})
        delivery = wait_for(lambda: WebhookDelivery.objects.first(), 10)
        failed = _final(delivery.pk, webhook_worker)
        assert failed.status == "failed" and failed.attempts == 3
        assert "gave up after 3 attempts" in failed.last_error
        assert len(receiver.requests) == 3

        client = APIClient()
        client.force_authenticate(qm)
        resp = client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
        assert resp.status_code == 202, resp.content
        replayed = _final(delivery.pk, webhook_worker)
    assert (replayed.status, replayed.attempts, replayed.replays) == ("delivered", 4, 1)
    assert len(receiver.requests) == 4
    last = receiver.requests[-1]
    assert last.headers["webhook-id"] == delivery.msg_id
    assert Webhook(secret).verify(last.body, last.headers)["data"] == {"alarm_id": 42}


def test_the_healthcheck_finds_the_webhook_worker(webhook_worker):
    import os
    import socket

    from ocrapp.healthcheck import check_webhook_worker

    ok, why = check_webhook_worker(f"test-webhooks-{os.getpid()}@{socket.gethostname()}")
    assert ok and "4 threads" in why, why
    assert not check_webhook_worker("webhooks@no-such-host", timeout=1.0)[0]
