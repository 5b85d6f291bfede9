"""Celery tasks: thin wrappers that take ids, re-read rows and call services.

The web enqueues by importing the task object (``read_capture.delay``): its name and queue are
declared here only. The pipeline and ``ocrapp.services`` are imported inside the task body, so the
web process never loads torch, onnxruntime or cv2 and importing this module stays cheap.

Lifecycle (``ocrapp.services``): the task claims the capture under a lease named by its task id
(a redelivered message keeps its id, so it may take over the claim of its dead predecessor), a
thread renews the lease while the pipeline runs, and the result or the failure is written in one
transaction. A database error anywhere (claim, image lookup, ``read_save``, ``capture_fail``) is
retried in the task with backoff and then through ``self.retry``; it is never acknowledged away.
Whatever still slips through (the broker down during the retry, a killed worker) is picked up by
the reaper (``manage.py capture_reaper``), which sends lost captures again.
"""

from __future__ import annotations

import contextvars
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from workers.celery import app

log = logging.getLogger(__name__)

OCR_QUEUE = "ocr"  # OCR workers consume it (-Q ocr)
WEBHOOK_QUEUE = "webhooks"  # the webhook worker consumes it (-Q webhooks, threads pool)
DB_TRIES = 5  # in-task tries of one database step: 0.5 + 1 + 2 + 4 s of backoff between them
DB_BACKOFF = 0.5
DB_RETRIES = 20  # then self.retry, at most this many times (countdown up to 60 s)

T = TypeVar("T")


def _db_errors() -> tuple[type[BaseException], ...]:
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def _with_db_retry(task, what: str, capture_id: str, fn: Callable[[], T]) -> T:
    """Run one database step; on a connection-level error retry it here with backoff, then
    re-publish the task (``self.retry``) so that the message is never acknowledged away."""
    from django.db import close_old_connections

    errors = _db_errors()
    for i in range(DB_TRIES):
        try:
            return fn()
        except errors as exc:
            close_old_connections()  # drop the broken connection; the next query reconnects
            if i == DB_TRIES - 1:
                _retry_later(task, what, capture_id, exc)
            delay = DB_BACKOFF * 2**i
            log.warning(
                "database error during %s of capture %s (%s: %s); try %d/%d in %.1fs",
                what,
                capture_id,
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                i + 2,
                DB_TRIES,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _retry_later(task, what: str, capture_id: str, exc: BaseException):
    countdown = min(60, 5 * 2**task.request.retries)
    log.warning(
        "database still failing during %s of capture %s; task retried in %ss",
        what,
        capture_id,
        countdown,
    )
    raise task.retry(exc=exc, countdown=countdown, max_retries=DB_RETRIES) from exc


class LeaseKeeper:
    """Renews the claim's lease every third of ``OCR_LEASE_SECONDS`` while the pipeline runs, in
    a thread with its own database connection. If the worker dies the renewals stop and the
    reaper sends the capture again once the lease expires."""

    def __init__(self, capture_id: str, token: str) -> None:
        from django.conf import settings

        self.capture_id = capture_id
        self.token = token
        self.interval = max(1.0, settings.OCR_LEASE_SECONDS / 3)
        self._stop = threading.Event()
        # the thread's log lines carry the task's context (capture id, task id: ocrapp.logctx)
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(
            target=ctx.run, args=(self._run,), name=f"lease-{capture_id}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from django.db import close_old_connections, connection

        from ocrapp import services

        try:
            while not self._stop.wait(self.interval):
                try:
                    if not services.capture_lease_renew(
                        capture_id=self.capture_id, token=self.token
                    ):
                        # finished meanwhile, or (after a long database outage) resent by the
                        # reaper and taken over: read_save still stores at most one result
                        log.info("capture %s: lease ended", self.capture_id)
                        return
                except _db_errors() as exc:
                    close_old_connections()
                    log.warning("capture %s: lease not renewed (%s)", self.capture_id, exc)
        finally:
            connection.close()


@app.task(
    bind=True,
    name="workers.tasks.read_capture",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded per cause: OCR_MAX_ATTEMPTS claims, DB_RETRIES database retries
)
def read_capture(self, capture_id: str) -> str:
    """Run the vision pipeline on one capture and store the read. Safe to run twice."""
    from django.conf import settings

    from ocrapp import services

    token = self.request.id or ""
    claim = _with_db_retry(
        self,
        "claim",
        capture_id,
        lambda: services.capture_claim(capture_id=capture_id, token=token),
    )
    if claim is None:
        return "skipped"
    log.info("reading capture %s (attempt %d)", capture_id, claim.attempts)

    def fail(code: str, reason: str) -> str:
        _with_db_retry(
            self,
            "capture_fail",
            capture_id,
            lambda: services.capture_fail(capture_id=capture_id, code=code, reason=reason),
        )
        return "failed"

    from workers.pipeline.errors import TerminalError, TransientError
    from workers.pipeline.loader import get_pipeline

    db_errors = _db_errors()
    with LeaseKeeper(capture_id, token):
        try:
            data = services.capture_image_bytes(capture_id=capture_id)
            result = get_pipeline().run(
                data, schema=claim.field_schema, auto_accept=claim.auto_accept
            )
        except TerminalError as exc:
            return fail(exc.code, exc.message)
        except services.ImageMissing:  # deleted file or S3 object: retrying will not bring it back
            return fail("image_missing", "The stored image file is missing.")
        except SoftTimeLimitExceeded:
            return fail("timeout", "Reading took longer than the time limit.")
        except db_errors as exc:  # the image lookup lost the database: same claim, later
            _retry_later(self, "image lookup", capture_id, exc)
        except (TransientError, OSError, MemoryError) as exc:
            if claim.attempts < settings.OCR_MAX_ATTEMPTS:
                countdown = 2**claim.attempts
                log.warning("transient error on %s (%s); retry in %ss", capture_id, exc, countdown)
                _with_db_retry(
                    self,
                    "release",
                    capture_id,
                    lambda: services.capture_release(
                        capture_id=capture_id, token=token, retry_in=countdown
                    ),
                )
                raise self.retry(exc=exc, countdown=countdown) from exc
            return fail("transient_error", str(exc))
        except (
            Exception
        ) as exc:  # a bug: fail the capture terminally with the reason, keep the trace
            log.exception("pipeline crashed on capture %s", capture_id)
            return fail("pipeline_error", f"{type(exc).__name__}: {exc}")

        payload = result.to_dict()
        worker = f"{socket.gethostname()}/{self.request.hostname or ''}"
        read = _with_db_retry(
            self,
            "read_save",
            capture_id,
            lambda: services.read_save(capture_id=capture_id, result=payload, worker=worker),
        )
    timings = payload.get("timings_ms") or {}
    log.info(
        "capture %s read: %s",
        capture_id,
        "saved" if read is not None else "already saved (duplicate)",
        extra={"total_ms": timings.get("total"), "device": payload.get("device", "")},
    )
    return "saved" if read is not None else "duplicate"


@app.task(
    name="workers.tasks.deliver_webhook",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=120,
    time_limit=150,
)
def deliver_webhook(delivery_id: int) -> str:
    """Send one attempt of a webhook delivery (``ocrapp.webhooks.delivery_attempt``): claims it
    under its row lock, so a duplicate message is harmless; the next try, if any, is a new
    message with a countdown, and the reaper re-sends deliveries whose message was lost."""
    from ocrapp import webhooks

    return webhooks.delivery_attempt(delivery_id=delivery_id)


# Routing, once, beside the task it routes: the web (which imports this module to enqueue), the
# worker (app.conf.imports) and the task's own retries all publish read_capture to OCR_QUEUE;
# webhook deliveries go to WEBHOOK_QUEUE, so a slow receiver never holds up a read.
app.conf.task_routes = {
    read_capture.name: {"queue": OCR_QUEUE},
    deliver_webhook.name: {"queue": WEBHOOK_QUEUE},
}
