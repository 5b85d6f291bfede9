"""Celery application. Configuration comes from Django settings (CELERY_* names).

Start a worker on the OCR queue with::

    celery -A workers.celery worker -Q ocr --concurrency 1 --prefetch-multiplier 1
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrapp.settings")

app = Celery("serialread")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.tasks",)
