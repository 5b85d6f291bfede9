"""Capture lifecycle on real PostgreSQL and Redis: lease, redelivery cap, reaper.

The reaper publishes inside its transaction, so what it sent is read back from the real "ocr"
queue (no worker consumes it in this module).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from ocrapp import services
from ocrapp.models import AuditEvent, Capture, Read
from tests.images import label_png
from tests.results import result_dict

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _policy(settings):
    settings.OCR_MAX_ATTEMPTS = 3
    settings.OCR_LEASE_SECONDS = 30
    settings.OCR_REAP_PENDING_AFTER = 60


@pytest.fixture
def ocr_queue():
    """Read back (and remove) what was published to the real "ocr" queue: capture ids."""
    from workers.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge("ocr")

        def drain() -> list[str]:
            out = []
            while (message := channel.basic_get("ocr", no_ack=True)) is not None:
                args, _kwargs, _embed = message.decode()
                out.append(args[0])
            return out

        yield drain
        channel.queue_purge("ocr")


def _capture(user, product_type, station, text="S/N: X1"):
    # django_db (not transactional): the on-commit enqueue never runs, as if its message was lost
    capture, _ = services.capture_create(
        user=user, image_bytes=label_png([text]), product_type=product_type, station=station
    )
    return capture


def _age(capture, **fields):
    Capture.objects.filter(pk=capture.pk).update(**fields)


def test_capture_create_records_when_it_was_sent(user, product_type, station):
    before = timezone.now()
    capture = _capture(user, product_type, station)
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PENDING
    assert before <= capture.enqueued_at <= timezone.now()
    assert (capture.attempts, capture.requeues, capture.claim_token) == (0, 0, "")


def test_claim_holds_a_lease_named_by_its_message(user, product_type, station):
    capture = _capture(user, product_type, station)
    claim = services.capture_claim(capture_id=capture.pk, token="task-1")
    assert claim is not None and claim.attempts == 1 and claim.token == "task-1"
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PROCESSING and capture.claim_token == "task-1"
    assert capture.lease_expires_at > timezone.now() + timedelta(seconds=25)

    # A second message for it (another task id) is dropped while the lease holds.
    assert services.capture_claim(capture_id=capture.pk, token="task-2") is None
    capture.refresh_from_db()
    assert (capture.attempts, capture.claim_token) == (1, "task-1")

    # Renewing: only the holder can.
    assert services.capture_lease_renew(capture_id=capture.pk, token="task-2") is False
    assert services.capture_lease_renew(capture_id=capture.pk, token="task-1") is True

    # The same message redelivered after its worker died takes over at once.
    assert services.capture_claim(capture_id=capture.pk, token="task-1").attempts == 2
    # Any message may once the lease has expired (its run stopped renewing it).
    _age(capture, lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.capture_claim(capture_id=capture.pk, token="task-3").attempts == 3


def test_capture_claimed_more_than_the_cap_is_quarantined(user, product_type, station):
    capture = _capture(user, product_type, station)
    for attempt in (1, 2, 3):  # the reader crashed on it each time; the broker redelivered
        assert services.capture_claim(capture_id=capture.pk, token="t").attempts == attempt
    assert services.capture_claim(capture_id=capture.pk, token="t") is None

    capture.refresh_from_db()
    assert capture.status == Capture.Status.FAILED
    assert capture.failure_code == "quarantined"
    assert "started on this image 3 times and never finished" in capture.failure_reason
    assert capture.attempts == 3 and capture.finished_at is not None
    assert not Read.objects.filter(capture=capture).exists()
    event = AuditEvent.objects.get(action="capture.quarantine", object_id=str(capture.pk))
    assert event.actor is None and event.actor_name == "system"
    assert event.before == {"status": "PROCESSING", "attempts": 3}
    assert event.after["failure_code"] == "quarantined" and "3 times" in event.reason
    # nothing is read over it later
    assert services.capture_claim(capture_id=capture.pk, token="t") is None
    assert services.read_save(capture_id=capture.pk, result=result_dict()) is None
    assert not Read.objects.filter(capture=capture).exists()


def test_quarantine_reason_has_words_in_both_languages():
    from django.utils import translation

    from ocrapp.templatetags.ocrui import failure_message

    generic = failure_message("no-such-code")
    with translation.override("en"):
        en = failure_message("quarantined")
    with translation.override("ko"):
        ko = failure_message("quarantined")
    assert en != generic and "set aside" in en
    assert ko != en and "보류" in ko


def test_release_gives_the_capture_back_to_the_queue(user, product_type, station):
    capture = _capture(user, product_type, station)
    services.capture_claim(capture_id=capture.pk, token="t")
    assert services.capture_release(capture_id=capture.pk, token="other") is False
    assert services.capture_release(capture_id=capture.pk, token="t", retry_in=8) is True
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PENDING and capture.claim_token == ""
    assert capture.lease_expires_at is None and capture.attempts == 1
    assert capture.enqueued_at > timezone.now() + timedelta(seconds=6)  # when the retry is due


def test_reaper_resends_a_pending_capture_whose_message_was_lost(
    user, product_type, station, ocr_queue
):
    lost = _capture(user, product_type, station, "S/N: LOST1")
    waiting = _capture(user, product_type, station, "S/N: FRESH1")  # sent just now: left alone
    _age(lost, enqueued_at=timezone.now() - timedelta(seconds=61))

    report = services.capture_reap()
    assert report.resent_pending == (str(lost.pk),)
    assert not (report.resent_expired or report.quarantined or report.not_sent)
    assert ocr_queue() == [str(lost.pk)]
    lost.refresh_from_db()
    assert lost.status == Capture.Status.PENDING and lost.requeues == 1
    assert timezone.now() - lost.enqueued_at < timedelta(seconds=5)
    event = AuditEvent.objects.get(action="capture.requeue", object_id=str(lost.pk))
    assert event.after == {"status": "PENDING", "requeues": 1} and "lost" in event.reason
    waiting.refresh_from_db()
    assert waiting.requeues == 0

    # Still not read: sent again after twice the wait (120 s), not after 60 s (by then the
    # other capture has waited 60 s and goes for the first time).
    now = timezone.now()
    report = services.capture_reap(now=now + timedelta(seconds=61))
    assert report.resent_pending == (str(waiting.pk),)
    assert ocr_queue() == [str(waiting.pk)]
    report = services.capture_reap(now=now + timedelta(seconds=121))
    assert str(lost.pk) in report.resent_pending
    lost.refresh_from_db()
    assert lost.requeues == 2


def test_reaper_resends_an_expired_lease_then_quarantines_at_the_cap(
    user, product_type, station, ocr_queue
):
    capture = _capture(user, product_type, station)
    services.capture_claim(capture_id=capture.pk, token="t1")
    _age(capture, lease_expires_at=timezone.now() - timedelta(seconds=1))  # its worker died

    report = services.capture_reap()
    assert report.resent_expired == (str(capture.pk),)
    assert ocr_queue() == [str(capture.pk)]
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PENDING and capture.claim_token == ""
    assert capture.lease_expires_at is None and capture.attempts == 1

    # Two more runs die on it: at the cap the reaper quarantines instead of sending it again.
    services.capture_claim(capture_id=capture.pk, token="t2")
    services.capture_claim(capture_id=capture.pk, token="t2")
    _age(capture, lease_expires_at=timezone.now() - timedelta(seconds=1))
    report = services.capture_reap()
    assert report.quarantined == (str(capture.pk),) and not report.resent_expired
    assert ocr_queue() == []
    capture.refresh_from_db()
    assert (capture.status, capture.failure_code) == (Capture.Status.FAILED, "quarantined")


def test_reaper_leaves_live_and_finished_captures_alone(user, product_type, station, ocr_queue):
    live = _capture(user, product_type, station, "S/N: LIVE1")
    services.capture_claim(capture_id=live.pk, token="t")
    done = _capture(user, product_type, station, "S/N: DONE1")
    services.capture_claim(capture_id=done.pk)
    services.read_save(capture_id=done.pk, result=result_dict())
    long_ago = timezone.now() - timedelta(hours=1)
    _age(live, enqueued_at=long_ago)
    _age(done, enqueued_at=long_ago, lease_expires_at=long_ago)

    assert not services.capture_reap()
    assert ocr_queue() == []
    assert not AuditEvent.objects.filter(action="capture.requeue").exists()
    live.refresh_from_db()
    assert live.status == Capture.Status.PROCESSING and live.requeues == 0


def test_enqueue_fresh_gives_a_quarantined_capture_a_new_start(
    user, product_type, station, ocr_queue, django_capture_on_commit_callbacks
):
    capture = _capture(user, product_type, station)
    for _ in range(4):
        services.capture_claim(capture_id=capture.pk, token="t")
    capture.refresh_from_db()
    assert capture.failure_code == "quarantined"

    with django_capture_on_commit_callbacks(execute=True):
        services.capture_enqueue(capture_id=capture.pk, fresh=True)  # e.g. a manager's retry
    assert ocr_queue() == [str(capture.pk)]
    capture.refresh_from_db()
    assert capture.status == Capture.Status.PENDING and capture.attempts == 0
    assert services.capture_claim(capture_id=capture.pk, token="t2").attempts == 1


def test_reaper_does_not_resend_a_capture_still_waiting_in_the_queue(
    user, product_type, station, ocr_queue
):
    from workers.tasks import read_capture

    slow = _capture(user, product_type, station)
    read_capture.delay(str(slow.pk))  # its message is there, behind a long queue
    _age(slow, enqueued_at=timezone.now() - timedelta(seconds=300))
    assert not services.capture_reap()
    slow.refresh_from_db()
    assert slow.requeues == 0

    assert ocr_queue() == [str(slow.pk)]  # now it is gone: the next pass sends it again
    assert services.capture_reap().resent_pending == (str(slow.pk),)
    assert ocr_queue() == [str(slow.pk)]
