"""Celery tasks: thin wrappers that take ids, re-read rows and call services.

The web enqueues by importing the task object (``read_capture.delay``): its name and queue are
declared here only. The pipeline and ``ocrapp.services`` are imported inside the task body, so the
web process never loads torch, onnxruntime or cv2 and importing this module stays cheap.
"""

from __future__ import annotations

import logging
import socket

from celery.exceptions import SoftTimeLimitExceeded

from workers.celery import app

log = logging.getLogger(__name__)

MAX_RETRIES = 3
OCR_QUEUE = "ocr"  # OCR workers consume it (-Q ocr)


@app.task(
    bind=True,
    name="workers.tasks.read_capture",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
)
def read_capture(self, capture_id: str) -> str:
    """Run the vision pipeline on one capture and store the read. Safe to run twice."""
    from ocrapp import services

    claim = services.capture_claim(capture_id=capture_id)
    if claim is None:
        log.info("capture %s already finished or gone; nothing to do", capture_id)
        return "skipped"

    from workers.pipeline.errors import TerminalError, TransientError
    from workers.pipeline.loader import get_pipeline

    try:
        data = services.capture_image_bytes(capture_id=capture_id)
        result = get_pipeline().run(data, schema=claim.field_schema, auto_accept=claim.auto_accept)
    except TerminalError as exc:
        services.capture_fail(capture_id=capture_id, code=exc.code, reason=exc.message)
        return "failed"
    except services.ImageMissing:  # deleted file or S3 object: retrying will not bring it back
        services.capture_fail(
            capture_id=capture_id, code="image_missing", reason="The stored image file is missing."
        )
        return "failed"
    except SoftTimeLimitExceeded:
        services.capture_fail(
            capture_id=capture_id, code="timeout", reason="Reading took longer than the time limit."
        )
        return "failed"
    except (TransientError, OSError, MemoryError) as exc:
        if self.request.retries < MAX_RETRIES:
            countdown = 2 ** (self.request.retries + 1)
            log.warning("transient error on %s (%s); retry in %ss", capture_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        services.capture_fail(capture_id=capture_id, code="transient_error", reason=str(exc))
        return "failed"
    except Exception as exc:  # a bug: fail the capture terminally with the reason, keep the trace
        log.exception("pipeline crashed on capture %s", capture_id)
        services.capture_fail(
            capture_id=capture_id, code="pipeline_error", reason=f"{type(exc).__name__}: {exc}"
        )
        return "failed"

    read = services.read_save(
        capture_id=capture_id,
        result=result.to_dict(),
        worker=f"{socket.gethostname()}/{self.request.hostname or ''}",
    )
    return "saved" if read is not None else "duplicate"


# Routing, once, beside the task it routes: the web (which imports this module to enqueue), the
# worker (app.conf.imports) and the task's own retries all publish read_capture to OCR_QUEUE.
app.conf.task_routes = {read_capture.name: {"queue": OCR_QUEUE}}
