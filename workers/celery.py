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


@signals.worker_process_init.connect
def _warm_pool_child(**_kwargs) -> None:
    """In each prefork child, after fork (the parent's models stay unloaded)."""
    from django.conf import settings

    if settings.OCR_WARMUP:
        from workers.warmup import warm_up

        warm_up()


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
