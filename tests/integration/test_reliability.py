"""No capture is lost: a real Celery worker, the real reaper process, real PostgreSQL faults.

Each test starts its own worker (``OCR_FIELD_EXTRACTOR=rules``: the lifecycle is under test, so
the pool child warms up in about a second) and commits its data (``transaction=True``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from django.db import transaction

from ocrapp import services
from ocrapp.models import AuditEvent, Capture, Read
from tests.conftest import ROOT, _test_database_url, run_celery_worker, wait_for
from tests.images import label_png

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {"OCR_FIELD_EXTRACTOR": "rules"}


def _create(user, station, product_type, text="S/N: SN20260077", **kw):
    capture, _ = services.capture_create(
        user=user,
        image_bytes=label_png([text], **kw),
        product_type=product_type,
        station=station,
    )
    return capture


def _status(capture_id) -> tuple[str, int, str]:
    c = Capture.objects.get(pk=capture_id)
    return c.status, c.attempts, c.failure_code


def _with_option(url: str, option: str) -> str:
    """A libpq ``options`` parameter (``-c name=value``) appended to a DATABASE_URL."""
    from urllib.parse import quote

    return f"{url}{'&' if '?' in url else '?'}options={quote(option)}"


def _purge_ocr_queue() -> int:
    from workers.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_purge("ocr") or 0


def test_reaper_resends_a_capture_whose_message_was_dropped(
    django_db_blocker, tmp_path, user, station, product_type
):
    capture = _create(user, station, product_type)  # committed: its message is on the queue
    assert _purge_ocr_queue() >= 1  # ... and now it is gone (as after a Redis crash)
    with run_celery_worker(django_db_blocker, tmp_path, FAST) as worker:
        wait_for(lambda: "pipeline warm in pid" in worker.log(), 60)
        assert _status(capture.pk)[0] == Capture.Status.PENDING  # nobody will read it ...
        env = dict(
            os.environ,
            DATABASE_URL=_test_database_url(),
            OCR_REAP_PENDING_AFTER="1",
            OCR_REAP_INTERVAL="1",
            PYTHONUNBUFFERED="1",
        )
        log_path = tmp_path / "reaper.log"
        with open(log_path, "wb") as log:
            reaper = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "capture_reaper"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:  # ... until the reaper sends it again
                wait_for(lambda: _status(capture.pk)[0] == Capture.Status.DONE, 60)
            finally:
                reaper.send_signal(signal.SIGTERM)
                rc = reaper.wait(20)
    reaper_log = log_path.read_text()
    assert rc == 0 and "capture reaper stopped" in reaper_log, reaper_log
    assert f"capture {capture.pk} sent to the reader again" in reaper_log
    capture.refresh_from_db()
    assert capture.requeues == 1 and capture.attempts == 1
    assert Read.objects.filter(capture=capture).count() == 1
    assert (
        AuditEvent.objects.filter(action="capture.requeue", object_id=str(capture.pk)).count() == 1
    )


def test_database_error_during_claim_is_retried_not_acknowledged(
    django_db_blocker, tmp_path, user, station, product_type
):
    """The worker's claim meets a real lock timeout (a row lock held here, lock_timeout=800ms on
    the worker's connections): the task retries; the capture is read once the lock is gone."""
    from workers.tasks import read_capture

    capture = _create(user, station, product_type)
    env = dict(FAST, DATABASE_URL=_with_option(_test_database_url(), "-c lock_timeout=800"))
    with run_celery_worker(django_db_blocker, tmp_path, env) as worker:  # purges its message
        wait_for(lambda: "pipeline warm in pid" in worker.log(), 60)
        marker = f"database error during claim of capture {capture.pk}"
        with transaction.atomic():
            Capture.objects.select_for_update().get(pk=capture.pk)  # held until the block ends
            read_capture.delay(str(capture.pk))
            wait_for(lambda: marker in worker.log(), 30)
            assert _status(capture.pk)[:2] == (Capture.Status.PENDING, 0)
        wait_for(lambda: _status(capture.pk)[0] == Capture.Status.DONE, 60)
        log = worker.log()
    assert "lock timeout" in log
    capture.refresh_from_db()
    assert capture.attempts == 1  # the failed claim did not count as an attempt
    assert capture.requeues == 0  # no reaper ran: the message itself was retried
    assert Read.objects.filter(capture=capture).count() == 1


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_pool_children_are_warm_and_the_parent_loads_no_model(django_db_blocker, tmp_path):
    with run_celery_worker(django_db_blocker, tmp_path, FAST) as worker:
        wait_for(lambda: "pipeline warm in pid" in worker.log(), 60)
        children = psutil.Process(worker.proc.pid).children()
        assert len(children) == 1
        child = children[0].pid
        assert f"pipeline warm in pid {child}" in worker.log()
        assert "onnxruntime" in _maps(child)  # models built after fork, in the child ...
        parent = _maps(worker.proc.pid)
        assert "onnxruntime" not in parent and "libtorch" not in parent  # ... never in the parent


def test_image_that_kills_its_worker_is_quarantined_at_the_cap(
    django_db_blocker, tmp_path, user, station, product_type
):
    """A reader that dies on a photo (its pool child SIGKILLed while reading, twice) is not
    redelivered forever: with OCR_MAX_ATTEMPTS=2 the third delivery quarantines it."""
    env = dict(FAST, OCR_MAX_ATTEMPTS="2")
    with run_celery_worker(django_db_blocker, tmp_path, env) as worker:
        wait_for(lambda: "pipeline warm in pid" in worker.log(), 60)
        capture = _create(
            user, station, product_type, "S/N: POISON0001", size=(3600, 2400), font_size=160
        )
        for attempt in (1, 2):
            wait_for(lambda a=attempt: _status(capture.pk)[:2] == ("PROCESSING", a), 60, 0.01)
            with transaction.atomic():  # holds read_save back, so the crash comes before it
                Capture.objects.select_for_update().get(pk=capture.pk)
                for child in psutil.Process(worker.proc.pid).children():
                    os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: _status(capture.pk)[0] == Capture.Status.FAILED, 90)
        log = worker.log()
    capture.refresh_from_db()
    assert capture.failure_code == "quarantined" and capture.attempts == 2
    assert "2 times" in capture.failure_reason
    assert not Read.objects.filter(capture=capture).exists()
    assert f"capture {capture.pk} quarantined" in log
    assert log.count("WorkerLostError") >= 2
