"""Celery application. Configuration comes from Django settings (CELERY_* names).

Start a worker on the OCR queue with::

    celery -A workers.celery worker -Q ocr --concurrency 1 --prefetch-multiplier 1

Each pool child builds its pipeline and reads one generated label as soon as it is forked
(``worker_process_init`` -> ``workers.warmup``; ``OCR_WARMUP=0`` turns it off), so the first photo
is as fast as the tenth. The parent process never loads a model.

When ``OCR_DEVICE`` asks for CUDA (``cuda`` / ``cuda:N``) the parent first runs
``python -m workers.pipeline.probe`` in a subprocess (the parent never touches CUDA itself) and
refuses to start when the session does not get the ``CUDAExecutionProvider``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import django
from celery import Celery, signals
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")
# Set Django up before Celery configures logging, so that Celery's handlers win and task logs
# reach the worker log (a later django.setup() in a pool process would reconfigure logging).
# A web process that imports this (ocrapp.services enqueues by task object) is already set up:
# running setup again there would only reconfigure its logging.
if not apps.ready and not apps.loading:
    django.setup()

app = Celery("serialread")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.tasks",)


_heartbeat = None  # this pool child's ocrapp.health.Heartbeat
_task_context: dict[str, object] = {}  # task id -> logctx token, between prerun and postrun


@signals.worker_process_init.connect
def _warm_pool_child(**_kwargs) -> None:
    """In each prefork child, after fork (the parent's models stay unloaded): warm up, then
    start the heartbeat that ``/readyz`` looks for (``ocrapp.health``)."""
    global _heartbeat
    from django.conf import settings

    from ocrapp.health import Heartbeat

    error = ""
    if settings.OCR_WARMUP:
        from workers import warmup

        warmup.warm_up()
        error = warmup.LAST_ERROR
    _heartbeat = Heartbeat(warmup_error=error).start()


@signals.worker_process_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _structured_logs(logger=None, **_kwargs) -> None:
    """Celery's handlers get the log context (capture id, task id) and, with LOG_FORMAT=json,
    the JSON formatter (``ocrapp.logctx``)."""
    from django.conf import settings

    from ocrapp.logctx import adopt_handlers

    if logger is not None:
        adopt_handlers(logger, settings.LOG_FORMAT)


@signals.task_prerun.connect
def _bind_task_context(task_id=None, task=None, args=None, kwargs=None, **_kw) -> None:
    """Every log line of a task carries its task id and, for a capture's task, the capture id."""
    from ocrapp import logctx

    capture_id = (kwargs or {}).get("capture_id") or (args[0] if args else None)
    if getattr(task, "name", "") != "workers.tasks.read_capture":
        capture_id = (kwargs or {}).get("capture_id")
    _task_context[task_id] = logctx.bind(task_id=task_id, capture_id=capture_id)


@signals.task_postrun.connect
def _unbind_task_context(task_id=None, **_kw) -> None:
    from ocrapp import logctx

    token = _task_context.pop(task_id, None)
    if token is not None:
        logctx.reset(token)


@signals.worker_init.connect
def _require_requested_device(**_kwargs) -> None:
    """In the worker parent, before the pool forks: an explicit ``OCR_DEVICE=cuda[:N]`` must get
    CUDA, else the worker exits (status 1, the reason in its log) rather than read on the CPU."""
    device = os.environ.get("OCR_DEVICE", "auto").strip()
    if not device.startswith("cuda"):
        return
    from django.conf import settings

    log = logging.getLogger("workers.device")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workers.pipeline.probe"],
            capture_output=True,
            text=True,
            timeout=settings.CELERY_WORKER_PROC_ALIVE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        done = None
    if done is None or done.returncode != 0:
        lines = [line for line in (done.stderr if done else "").splitlines() if line.strip()]
        reason = lines[-1] if lines else (f"exit {done.returncode}" if done else "timed out")
        log.critical("OCR_DEVICE=%s cannot run here, the worker stops: %s", device, reason)
        raise SystemExit(f"OCR_DEVICE={device}: {reason}")
    log.info("device probe: %s", done.stdout.strip())
