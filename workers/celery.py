"""Celery application. Configuration comes from Django settings (CELERY_* names).

Start a worker on the OCR queue with::

    celery -A workers.celery worker -Q ocr --concurrency 1 --prefetch-multiplier 1

Each pool child builds its pipeline and reads one generated label as soon as it is forked
(``worker_process_init`` -> ``workers.warmup``; ``OCR_WARMUP=0`` turns it off), so the first photo
is as fast as the tenth. The parent process never loads a model.
"""

from __future__ import annotations

import os

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
